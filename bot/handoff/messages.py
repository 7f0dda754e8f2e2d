"""What the assistant tells citizens about the handoff (French, vouvoiement).

Placeholders: `{position}`, `{wait}`, `{reference}`, `{next_opening}`, `{contact}` and the
commune's facts (`bot.replies.render`).
"""

from __future__ import annotations

CONNECTING = (
    "Je vous mets en relation avec un agent de la mairie. "
    "Vous êtes {position_text} ; attente estimée : {wait}.\n"
    "Vous pouvez déjà écrire votre question ici : l'agent la lira. "
    "Pour revenir à l'assistant automatique, écrivez « annuler »."
)
PHONE_TOO = "Si vous préférez, l'accueil de la mairie répond aussi au {telephone}."
ALREADY_QUEUED = (
    "Votre demande est déjà transmise : vous êtes {position_text} ; attente estimée : {wait}. "
    "Écrivez « annuler » pour revenir à l'assistant automatique."
)
EMERGENCY_FIRST = (
    "En cas de danger, appelez tout de suite le 112 (ou le 15, 17, 18). "
    "Sans abri : 115. Violences : 3919. Enfant en danger : 119. Détresse : 3114."
)
NO_AGENT = (
    "Aucun agent n'est disponible pour le moment ({why}). "
    "J'ai enregistré votre demande sous la référence {reference} : un agent la traitera "
    "{when}.\n"
    "Voulez-vous être recontacté par téléphone ou par e-mail ? Vous pouvez aussi joindre la mairie :\n{contact}"
)
EXPIRED = (
    "Désolé, aucun agent n'a pu vous répondre à temps. J'ai enregistré votre demande sous la "
    "référence {reference}. Voulez-vous être recontacté par téléphone ou par e-mail ? "
    "Vous pouvez aussi joindre la mairie :\n{contact}\nJe reste disponible pour vos autres questions."
)
WHEN_OPEN = "dès que possible"
WHEN_CLOSED = "dès la réouverture, {next_opening}"
WHY_CLOSED = "la mairie est fermée : {reason}"
WHY_CLOSED_NOW = "la mairie est fermée en ce moment"
WHY_BUSY = "tous les agents sont occupés ou absents"
CANCELLED = (
    "C'est noté, vous avez quitté la file d'attente. Je suis l'assistant automatique : "
    "posez-moi votre question, ou écrivez « agent » pour redemander une personne."
)
HANDED_BACK = (
    "L'agent vous a redirigé vers l'assistant automatique. Posez-moi votre question, "
    "ou écrivez « agent » pour reparler à une personne."
)
CLOSED = (
    "L'agent a terminé la conversation. Merci de votre message ! "
    "Je reste disponible pour vos questions ; écrivez « agent » pour reparler à une personne."
)
CALLBACK_BUTTON = "Être recontacté"
CANCEL_BUTTON = "Annuler"
CALLBACK_ASK_CONTACT = (
    "À quel numéro de téléphone ou à quelle adresse e-mail la mairie peut-elle vous recontacter ? "
    "(Écrivez « annuler » pour arrêter.)"
)
CALLBACK_BAD_CONTACT = (
    "Je n'ai pas reconnu un numéro de téléphone ou une adresse e-mail. "
    "Exemples : 06 12 34 56 78 ou prenom.nom@exemple.fr"
)
CALLBACK_ASK_CONSENT = (
    "Acceptez-vous que la mairie conserve ces coordonnées ({contact}) pour vous recontacter "
    "au sujet de votre demande, et pour rien d'autre ? Elles seront effacées une fois la demande traitée."
)
CALLBACK_YES_NO = "Répondez simplement « oui » ou « non », s'il vous plaît."
CALLBACK_DONE = (
    "C'est noté : la mairie vous recontactera ({contact}) {when}. "
    "Référence de votre demande : {reference}."
)
CALLBACK_NO_CONSENT = (
    "D'accord, je ne conserve pas vos coordonnées. Votre demande reste enregistrée sous la "
    "référence {reference} ; vous pouvez la rappeler en contactant la mairie :\n{contact}"
)
CALLBACK_FAILED = (
    "Désolé, je n'ai pas pu enregistrer votre demande à cause d'un problème technique. "
    "Contactez directement la mairie :\n{contact}"
)
CANCEL_NOTHING = "D'accord, c'est annulé. Que puis-je faire pour vous ?"


def position_text(position: int) -> str:
    if position <= 1:
        return "le prochain à être pris en charge"
    return f"n° {position} dans la file d'attente"


def wait_text(minutes: int) -> str:
    if minutes <= 1:
        return "moins d'une minute" if minutes <= 0 else "environ 1 minute"
    return f"environ {minutes} minutes"


def when_text(is_open: bool, next_opening: str) -> str:
    return WHEN_OPEN if is_open else WHEN_CLOSED.format(next_opening=next_opening)
