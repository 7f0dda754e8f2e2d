"""What the assistant says outside FAQ answers, in French, with commune placeholders.

One place for these texts, so that the action server and the channels (which answer
even when the action server is down) speak with one voice.
"""

from __future__ import annotations

from bot.commune import Commune

GREET = (
    "Bonjour 👋 Je suis l'assistant automatique de la mairie de {commune}. "
    "Je réponds aux questions sur vos démarches : papiers d'identité, état civil, élections, "
    "école, déchets, urbanisme…\n"
    "Écrivez votre question en quelques mots. Pour parler à une personne, écrivez « agent »."
)
SUGGEST = "Je ne suis pas sûr d'avoir compris. Vouliez-vous dire…"
SUGGEST_NONE = (
    "Je ne suis pas sûr d'avoir compris. Pouvez-vous reformuler votre question en quelques mots ? "
    "Vous pouvez aussi parler à un agent."
)
SECOND_MISS = (
    "Désolé, je n'arrive pas à vous répondre. Un agent de la mairie pourra vous aider :\n"
    "{contact}"
)
OUT_OF_SCOPE = (
    "Cette question ne relève pas de la mairie et je ne peux pas y répondre. "
    "Pour les démarches administratives, consultez https://www.service-public.fr "
    "ou le 39 39 (Allô Service Public).\n"
    "Pour une question sur la commune, reformulez-la ou écrivez « agent »."
)
HANDOFF_CONTACT = (
    "Un agent de la mairie peut vous répondre. Contactez l'accueil :\n{contact}"
)
REPORT_PROBLEM = (
    "Merci de votre signalement. Pour qu'il soit traité par les services techniques, "
    "indiquez le lieu précis et décrivez le problème à l'accueil de la mairie :\n{contact}\n"
    "En cas de danger immédiat, appelez le 112."
)
TECHNICAL_PROBLEM = (
    "Désolé, je rencontre un problème technique et ne peux pas vous répondre pour le moment. "
    "Vous pouvez joindre la mairie de {commune} :\n{contact}"
)
ANSWER_MISSING = (
    "Je n'ai pas encore de réponse écrite sur ce sujet. L'accueil de la mairie pourra vous "
    "renseigner :\n{contact}"
)
AGENT_BUTTON = "Parler à un agent"
# A theme of the persistent menu: its topics as quick replies.
THEME_TOPICS = "Questions fréquentes « {theme} » : choisissez un sujet."
THEME_MORE = "Votre question n'y est pas ? Écrivez-la en quelques mots."
# Quick replies under an FAQ answer: the citizen rates it (editors see the ratings per topic).
RATE_USEFUL_BUTTON = "👍 Utile"
RATE_NOT_USEFUL_BUTTON = "👎 Pas utile"
RATED_USEFUL = "Merci pour votre retour 🙂 Avez-vous une autre question ?"
RATED_NOT_USEFUL = (
    "Merci de nous l'avoir dit : la mairie s'en servira pour améliorer cette réponse. "
    "Vous pouvez reformuler votre question, ou parler à un agent."
)


def render(template: str, commune: Commune) -> str:
    """Fills `{contact}` and the commune placeholders of a reply."""
    return commune.render(template.replace("{contact}", commune.contact_text()))
