"""Citizens' personal data (RGPD): the privacy notice, export ("mes données"), erasure
("supprimer mes données"), the retention purge and the masking of phone numbers and
e-mails in every log. See docs/privacy.md.

Only `masking` is imported here: it is installed by `bot/__init__.py` in every process.
"""
