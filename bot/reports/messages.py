"""What the assistant tells citizens about reports, complaints and their tracking (French,
vouvoiement, short messages). Placeholders in braces; `{contact}` and the commune's facts
are filled by `bot.replies.render`."""

from __future__ import annotations

# Report form ------------------------------------------------------------------------------
REPORT_INTRO = (
    "Je vais enregistrer votre signalement en quelques questions. "
    "À tout moment, écrivez « corriger » pour modifier une réponse ou « annuler » pour abandonner. "
    "En cas de danger immédiat, appelez le 112."
)
ASK_CATEGORY = "De quel type de problème s'agit-il ?"
BAD_CATEGORY = "Je n'ai pas reconnu le type de problème. Choisissez dans la liste (ou « Autre »)."
ASK_PLACE = (
    "Où se trouve le problème ? Écrivez l'adresse ou un repère précis (ex. : devant le 12 rue des Lilas), "
    "ou envoyez votre position 📍."
)
BAD_PLACE = "Je n'ai pas compris le lieu. Écrivez une adresse ou un repère (au moins quelques mots), ou envoyez votre position."
ASK_DESCRIPTION = "Décrivez le problème en une ou deux phrases."
BAD_DESCRIPTION = "Pouvez-vous décrire le problème un peu plus précisément (une phrase suffit) ?"
ASK_PHOTO = "Avez-vous une photo du problème ? Envoyez-la maintenant 📷, ou touchez « Pas de photo »."
NO_PHOTO_RECEIVED = "Je n'ai pas reçu de photo. Envoyez-la, ou touchez « Pas de photo »."
NO_PHOTO_BUTTON = "Pas de photo"
PHOTO_OK = "Photo bien reçue, merci."
LOCATION_OK = "Position bien reçue, merci."

# Complaint form ---------------------------------------------------------------------------
COMPLAINT_INTRO = (
    "Je vais enregistrer votre réclamation : elle sera transmise au service concerné, qui vous répondra. "
    "À tout moment, écrivez « corriger » pour modifier une réponse ou « annuler » pour abandonner."
)
ASK_SUBJECT = "Quel service ou quelle démarche votre réclamation concerne-t-elle ?"
BAD_SUBJECT = "Je n'ai pas reconnu le service. Choisissez dans la liste (ou « Autre »)."
ASK_COMPLAINT_DESCRIPTION = (
    "Expliquez ce qui s'est passé et ce que vous demandez (dates, numéro de dossier s'il y en a un)."
)

# Both forms -------------------------------------------------------------------------------
ASK_CONTACT = (
    "Souhaitez-vous aussi être recontacté par téléphone ou par e-mail ? Écrivez votre numéro ou votre adresse, "
    "ou touchez « Non merci ». Dans tous les cas, je vous préviendrai ici quand votre demande avancera."
)
NO_CONTACT_BUTTON = "Non merci"
BAD_CONTACT = (
    "Je n'ai pas reconnu de numéro de téléphone ni d'adresse e-mail. Exemples : 06 12 34 56 78 ou "
    "prenom.nom@exemple.fr. Ou touchez « Non merci »."
)
ASK_CONSENT = (
    "Acceptez-vous que la mairie utilise ce contact ({contact}) uniquement pour traiter cette demande ? "
    "Il sera effacé une fois la demande close, ou avant sur simple demande. Vos données : {privacy}"
)
YES_NO = "Répondez « oui » ou « non », s'il vous plaît."
CONSENT_YES = "Oui, j'accepte"
SUMMARY_REPORT = (
    "Récapitulatif de votre signalement :\n"
    "• Type : {category}\n• Lieu : {place}\n• Description : {description}\n• Photo : {photo}\n• Contact : {contact}\n"
    "Je l'envoie à la mairie ?"
)
SUMMARY_COMPLAINT = (
    "Récapitulatif de votre réclamation :\n"
    "• Service : {category}\n• Votre demande : {description}\n• Contact : {contact}\n"
    "Je l'envoie à la mairie ?"
)
SEND_BUTTON = "Envoyer"
CORRECT_BUTTON = "Corriger"
CANCEL_BUTTON = "Annuler"
CONFIRM_AGAIN = "Touchez « Envoyer » pour transmettre votre demande, « Corriger » pour la modifier, ou « Annuler »."
NO_PHOTO = "aucune"
PHOTO_ATTACHED = "jointe"
NO_CONTACT = "aucun (je vous répondrai ici)"
PLACE_FROM_PHOTO = "voir la photo jointe"
PLACE_FROM_LOCATION = "position envoyée ({lat:.5f}, {lon:.5f})"

NOT_AN_ANSWER = "Je n'ai pas pu lire cette réponse. Répondez par écrit, s'il vous plaît."

# Corrections and cancellation -------------------------------------------------------------
WHAT_TO_CORRECT = "Que voulez-vous corriger ? Vous pouvez aussi répondre directement à la question en cours."
CORRECT_FIELD = "D'accord, modifions : {field}."
NOTHING_TO_CORRECT = "Il n'y a rien à corriger pour le moment."
NO_FORM_TO_CORRECT = (
    "Il n'y a pas de demande en cours à corriger. Pour un signalement déjà envoyé, écrivez sa référence "
    "(ex. : où en est SIG-7K2P) ou contactez la mairie."
)
CANCELLED = "C'est annulé : rien n'a été envoyé. Je reste disponible pour vos autres questions."
ERASE_CANCELLED = "D'accord, je ne supprime rien. Je reste disponible pour vos questions."
FIELD_NAMES = {
    "category": "le type", "place": "le lieu", "description": "la description", "photo": "la photo",
    "contact": "le contact", "subject": "le service",
}
FIELD_BUTTONS = {
    "category": "Type", "place": "Lieu", "description": "Description", "photo": "Photo",
    "contact": "Contact", "subject": "Service",
}

# Done -------------------------------------------------------------------------------------
REPORT_DONE = (
    "Merci ! Votre signalement est enregistré sous la référence {reference}.\n"
    "Les services de la mairie vont l'examiner (délai indicatif : {delay}). "
    "Je vous préviendrai ici quand il avancera{contact_note}.\n"
    "Pour le suivre, écrivez « où en est {reference} »."
)
COMPLAINT_DONE = (
    "Votre réclamation est enregistrée sous la référence {reference}.\n"
    "La mairie s'engage à vous répondre sous {delay}, soit au plus tard le {due}. "
    "Je vous préviendrai ici de son avancement{contact_note}.\n"
    "Pour la suivre, écrivez « où en est {reference} ». Si le désaccord persiste ensuite, vous pourrez saisir "
    "gratuitement le Défenseur des droits."
)
CONTACT_NOTE = " (et vous recontacterons au {contact} si besoin)"
SAVE_FAILED = (
    "Désolé, je n'ai pas pu enregistrer votre demande à cause d'un problème technique. "
    "Vous pouvez la transmettre directement à la mairie :\n{contact}"
)

# Tracking ---------------------------------------------------------------------------------
TRACK_STATUS = "{kind} {reference} ({category}), déposé le {created} : {status}."
TRACK_STATUS_F = "{kind} {reference} ({category}), déposée le {created} : {status}."
TRACK_DUE = " Réponse prévue au plus tard le {due}."
TRACK_HANDOFF = "Votre demande {reference} du {created} : {status}."
HANDOFF_OPEN = "en attente de traitement par un agent"
HANDOFF_CLOSED = "traitée"
TRACK_UNKNOWN = (
    "Je ne trouve aucune demande avec la référence {reference}. Vérifiez-la (elle ressemble à SIG-7K2P ou "
    "REC-4MZ9), ou contactez la mairie au {telephone}."
)
TRACK_ASK = (
    "Quelle est la référence de votre demande ? Elle ressemble à SIG-7K2P (signalement) ou REC-4MZ9 "
    "(réclamation)."
)
TRACK_YOURS = "Vos demandes :"
TRACK_FAILED = "Désolé, je ne peux pas consulter les demandes pour le moment. Contactez la mairie :\n{contact}"

# Status changes sent to the citizen --------------------------------------------------------
STATUS_PHRASES = {
    "new": "la demande est bien enregistrée.",
    "in_progress": "les services de la mairie s'en occupent.",
    "resolved": "c'est traité. Merci de votre participation !",
    "rejected": "la mairie ne peut pas y donner suite.",
}
STATUS_UPDATE = "Du nouveau pour votre {kind_lower} {reference} ({category}) : {phrase}"
STATUS_MESSAGE = "\nMessage de la mairie : {message}"
STATUS_FOOTER = "\nUne question ? Répondez ici ou appelez le {telephone}."

# Attachments outside a form ---------------------------------------------------------------
ATTACHMENT_LOCATION = (
    "Merci, j'ai bien reçu votre position{where}. Voulez-vous signaler un problème à cet endroit ? "
    "Sinon, écrivez votre demande en quelques mots, ou « agent » pour parler à une personne."
)
ATTACHMENT_PHOTO = (
    "Merci, j'ai bien reçu {what}. Voulez-vous signaler un problème sur la voie publique ? "
    "Sinon, je ne peux pas regarder les images moi-même : pouvez-vous reformuler votre demande en quelques mots ? "
    "Vous pouvez aussi parler à un agent."
)
ATTACHMENT_OTHER = (
    "Merci, j'ai bien reçu {what}. Je ne peux lire que les messages écrits : pouvez-vous reformuler votre "
    "demande en quelques mots ? Vous pouvez aussi parler à un agent."
)
REPORT_BUTTON = "Signaler un problème"
