"""What citizens read about alerts, the crisis, rumours and consultations (French,
vouvoiement, short messages, one idea each)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

TOPIC_LABELS = {
    "crise": "Crises et alertes (météo, coupures…)",
    "travaux": "Travaux et circulation",
    "evenements": "Événements et sorties",
    "ecoles": "Écoles et périscolaire",
}
# Quick-reply titles: 20 characters at most (Messenger, WhatsApp).
TOPIC_BUTTONS = {"crise": "Crises et alertes", "travaux": "Travaux", "evenements": "Événements", "ecoles": "Écoles"}
ALL_BUTTON = "Tous les sujets"
STOP_ALL_BUTTON = "Tout arrêter"

ASK_TOPICS = (
    "Je peux vous prévenir ici des informations de la mairie. Quels sujets vous intéressent ?"
)
ASK_MORE_TOPICS = "Vous suivez : {topics}. Souhaitez-vous ajouter un sujet ?"
SUBSCRIBED = (
    "C'est noté ✅ Vous recevrez ici les messages de la mairie sur : {topics}.\n"
    "Nous ne gardons que votre identifiant {channel} et vos sujets. "
    "Pour arrêter, écrivez « stop alertes » à tout moment."
)
MESSENGER_OPTIN_INTRO = (
    "Messenger ne nous permet de vous écrire que dans les 24 heures après votre dernier message. "
    "Pour recevoir les alertes plus tard, acceptez les notifications ci-dessous."
)
MESSENGER_OPTIN_TITLE = "Alertes de la mairie"  # 65 characters at most (Meta)
MESSENGER_OPTIN_PAYLOAD = "guichet-alertes"
UNSUBSCRIBED_ALL = (
    "C'est fait : vous ne recevrez plus d'alertes de la mairie. "
    "Pour vous réabonner, écrivez « alertes »."
)
UNSUBSCRIBED_SOME = "C'est fait : vous ne recevrez plus les messages sur : {removed}. Vous suivez encore : {topics}."
NOT_SUBSCRIBED = "Vous n'êtes abonné à aucune alerte. Pour en recevoir, écrivez « alertes »."
ASK_UNSUBSCRIBE = "Vous suivez : {topics}. Que souhaitez-vous arrêter ?"
OFFER_UNSUBSCRIBE = (
    "Il n'y a rien à annuler. Vous recevez les alertes de la mairie ({topics}) : voulez-vous les arrêter ?"
)
KEEP_BUTTON = "Non, je garde"
SUBSCRIPTION_FAILED = (
    "Désolé, je ne peux pas enregistrer votre demande pour le moment. Réessayez plus tard, "
    "ou contactez la mairie :\n{contact}"
)

CRISIS = "⚠️ {title}\n{message}\nInformations officielles : {link}"
CRISIS_UNTIL = "(message en vigueur jusqu'au {until})"
NO_CRISIS = (
    "Aucune alerte n'est en cours dans la commune. En cas de danger immédiat, appelez le 112. "
    "Pour être prévenu à l'avenir, écrivez « alertes »."
)

RUMOUR = "{verdict} — « {statement} »\n{answer}\nSource : {source} ({date})"
NO_RUMOUR = (
    "Je n'ai pas d'information officielle sur ce sujet. Méfiez-vous des informations non vérifiées : "
    "les annonces de la mairie sont publiées sur {site_web}. Un agent peut vous répondre."
)

POLL_OFFER = "🗳️ Consultation de la mairie : {question}\n(réponses jusqu'au {until}, une seule voix par personne)"
POLL_AT_END = "Avant de partir : la mairie consulte les habitants. {question}"
NO_POLL = "Aucune consultation n'est ouverte en ce moment. Pour être prévenu des prochaines, écrivez « alertes »."
VOTE_RECORDED = "Merci ! Votre réponse « {choice} » est enregistrée. Les résultats seront publiés après le {until}."
VOTE_ALREADY = "Vous avez déjà répondu à cette consultation : une seule réponse par personne."
VOTE_CLOSED = "Cette consultation est terminée : les réponses ne sont plus acceptées."
VOTE_UNKNOWN = "Je n'ai pas reconnu votre réponse. Touchez l'un des choix ci-dessous :"
VOTE_NO_POLL = "Aucune consultation n'est ouverte en ce moment."
VOTE_FAILED = "Désolé, votre réponse n'a pas pu être enregistrée. Réessayez dans un instant."

# Broadcasts
BROADCAST_LINK = "En savoir plus"
BROADCAST_FOOTER = "Pour ne plus recevoir ces messages : écrivez « stop alertes »."
POLL_BROADCAST_HINT = "Pour répondre, écrivez « consultation »."


def topics_text(topics: list[str]) -> str:
    return ", ".join(TOPIC_LABELS.get(t, t) for t in topics)


def local_date(moment: dt.datetime, timezone: str, with_time: bool = False) -> str:
    """A naive UTC datetime as a French local date ("26/11/2026", "26/11/2026 à 18 h 00")."""
    local = moment.replace(tzinfo=dt.timezone.utc).astimezone(ZoneInfo(timezone))
    text = local.strftime("%d/%m/%Y")
    return f"{text} à {local.hour} h {local.minute:02d}" if with_time else text


CHANNEL_NAMES = {"messenger": "Messenger", "whatsapp": "WhatsApp", "telegram": "Telegram",
                 "instagram": "Instagram", "webchat": "de conversation", "socketio": "de conversation"}
