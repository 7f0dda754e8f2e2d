"""What the assistant tells citizens about their personal data (French, vouvoiement).
`{privacy}` is the commune's privacy page (commune.yml `confidentialite.page`)."""

from __future__ import annotations

NOTICE = (
    "🔒 Vos messages sont conservés {retention} pour traiter vos demandes, puis effacés. "
    "Écrivez « mes données » pour les consulter ou « supprimer mes données » pour les effacer. "
    "En savoir plus : {privacy}"
)
EXPORT_INTRO = "Voici les données que la mairie de {commune} conserve sur vous dans cette conversation ({channel}) :"
EXPORT_MESSAGES = "• {count} message(s) échangé(s) avec l'assistant depuis le {first}"
EXPORT_NO_MESSAGES = "• aucun message conservé en dehors de celui-ci"
EXPORT_REQUEST = "• {kind} {reference} ({category}, {status}), déposé(e) le {created}{contact}"
EXPORT_CONTACT = ", contact : {contact}"
EXPORT_HANDOFF = "• {count} demande(s) transmise(s) à un agent"
EXPORT_CALLBACK = "• {count} demande(s) de rappel avec vos coordonnées"
EXPORT_SUBSCRIPTIONS = "• {count} autre(s) enregistrement(s) (abonnements aux alertes, avis…)"
EXPORT_LINK = (
    "📄 Pour voir toutes vos données et les télécharger, ouvrez ce lien personnel, valable {validity} "
    "(ne le partagez pas) :\n{link}"
)
EXPORT_OUTRO = (
    "Vos messages sont conservés {retention}. Pour tout effacer, écrivez « supprimer mes données ». "
    "Une question sur vos données : {dpo}. En savoir plus : {privacy}"
)
# When no link could be made (database down between the two steps).
EXPORT_OUTRO_NO_LINK = (
    "Vos messages sont conservés {retention}. Pour une copie complète (fichier), écrivez à {dpo} en "
    "indiquant cette référence de conversation : {key}. Pour tout effacer, écrivez « supprimer mes données ». "
    "En savoir plus : {privacy}"
)
EXPORT_FAILED = (
    "Désolé, je ne peux pas consulter vos données pour le moment. Écrivez à {dpo} ou contactez la mairie :\n{contact}"
)
ASK_ERASE = (
    "Voulez-vous vraiment supprimer vos données ? Vos conversations avec l'assistant, vos coordonnées et vos "
    "abonnements seront effacés. Vos signalements et réclamations sont conservés sans aucune donnée personnelle, "
    "et vous ne pourrez plus en suivre l'avancement ici. C'est définitif."
)
ERASE_YES = "Oui, tout supprimer"
ERASE_NO = "Non, garder"
ERASE_DONE = (
    "C'est fait : vos coordonnées et abonnements sont effacés, et vos conversations le seront dans quelques "
    "instants. Vos signalements sont conservés sans données personnelles. Vous pouvez m'écrire à nouveau à tout moment."
)
ERASE_KEPT = "D'accord, je ne supprime rien. Je reste disponible pour vos questions."
ERASE_FAILED = (
    "Désolé, la suppression n'a pas pu être faite à cause d'un problème technique. Réessayez plus tard, ou "
    "écrivez à {dpo} :\n{contact}"
)
YES_NO = "Répondez « oui » pour tout supprimer ou « non » pour garder vos données."
