"""The choices citizens pick from and the labels staff read (French), and how a typed
answer is read back into one of them (accents, case and typos tolerated)."""

from __future__ import annotations

import re
import unicodedata

# Report categories: code -> (label shown as a quick reply, words that point to it).
REPORT_CATEGORIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "voirie": ("Voirie", ("voirie", "route", "chaussee", "trottoir", "nid de poule", "trou", "panneau",
                          "feu", "egout", "chemin", "rue", "pave", "marquage")),
    "eclairage": ("Éclairage", ("eclairage", "lampadaire", "lumiere", "ampoule", "eclaire", "lampe", "noir")),
    "proprete": ("Propreté", ("proprete", "sale", "poubelle", "tag", "graffiti", "crotte", "dechet",
                              "salete", "nettoyage")),
    "depot_sauvage": ("Dépôt sauvage", ("depot sauvage", "depot", "sauvage", "encombrant", "gravats",
                                        "matelas", "abandonne", "ordures")),
    "espaces_verts": ("Espaces verts", ("espaces verts", "espace vert", "arbre", "branche", "haie", "parc",
                                        "jardin", "pelouse", "herbe", "square", "vert")),
    "autre": ("Autre", ("autre", "autres", "divers")),
}
# Complaint subjects: the service concerned.
COMPLAINT_SUBJECTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "accueil": ("Accueil de la mairie", ("accueil", "guichet", "agent", "telephone", "attente", "mairie")),
    "etat_civil": ("État civil, papiers", ("etat civil", "papier", "carte", "passeport", "acte", "mariage",
                                          "naissance", "identite")),
    "urbanisme": ("Urbanisme", ("urbanisme", "permis", "travaux", "construction", "declaration")),
    "voirie_proprete": ("Voirie, propreté", ("voirie", "proprete", "route", "dechet", "poubelle", "collecte")),
    "ecole": ("École, périscolaire", ("ecole", "periscolaire", "cantine", "scolaire", "creche", "enfant")),
    "autre": ("Autre", ("autre", "autres", "divers")),
}
KIND_LABELS = {"report": "Signalement", "complaint": "Réclamation"}
KIND_PREFIXES = {"report": "SIG-", "complaint": "REC-"}
STATUS_LABELS = {
    "new": "Reçu",
    "in_progress": "En cours de traitement",
    "resolved": "Traité",
    "rejected": "Non retenu",
}
NOTIFICATION_LABELS = {
    "pending": "En attente d'envoi",
    "sent": "Envoyé",
    "not_delivered": "Non remis",
    "failed": "Échec, nouvel essai prévu",
    "sending": "Envoi en cours",
}
# Why a message could not reach the citizen (reasons recorded by the channels).
REASON_LABELS = {
    "window_closed": "hors de la fenêtre de 24 h de la plateforme (l'usager n'a pas écrit récemment)",
    "human_agent_window_closed": "hors de la fenêtre de 7 jours de la plateforme",
    "no_user_message": "l'usager n'a jamais écrit sur ce canal",
    "token_invalid": "jeton d'accès de la plateforme invalide",
    "graph_error": "erreur de la plateforme",
    "undeliverable": "message impossible à remettre",
    "rejected": "message refusé par la plateforme",
    "unreachable": "plateforme injoignable",
    "failed": "échec de remise",
    "channel_cannot_push": "ce canal ne permet pas d'envoyer un message plus tard",
    "rasa_unreachable": "l'assistant ne répond pas (nouvel essai automatique)",
    "anonymised": "données de l'usager effacées",
    "no_conversation": "pas de conversation liée",
}


def plain(text: str) -> str:
    """Lowercase, without accents or punctuation, single spaces."""
    text = unicodedata.normalize("NFKD", str(text).lower())
    text = "".join(c for c in text if not unicodedata.combining(c))
    return " ".join(re.sub(r"[^\w]+", " ", text).split())


def _choose(text: str, choices: dict[str, tuple[str, tuple[str, ...]]]) -> str | None:
    words = plain(text)
    if not words:
        return None
    codes = list(choices)
    if words.isdigit() and 1 <= int(words) <= len(codes):
        return codes[int(words) - 1]  # "3" for the third choice
    for code, (label, _) in choices.items():
        if words in (plain(label), plain(code)):
            return code
    padded = f" {words} "
    for code, (_, keywords) in choices.items():
        if any(f" {keyword} " in padded or (len(keyword) > 4 and keyword in words) for keyword in keywords):
            return code
    return None


def report_category(text: str) -> str | None:
    return _choose(text, REPORT_CATEGORIES)


def complaint_subject(text: str) -> str | None:
    return _choose(text, COMPLAINT_SUBJECTS)


def category_label(kind: str, code: str) -> str:
    choices = REPORT_CATEGORIES if kind == "report" else COMPLAINT_SUBJECTS
    return choices.get(code, (code, ()))[0]
