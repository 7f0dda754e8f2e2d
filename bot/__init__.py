"""Guichet: a French citizen assistant for town halls (Rasa 3.6). See README.md.

Every Guichet process imports this package (the Rasa server through its channels, the
action server, the console, the command-line tools): phone numbers and e-mail addresses
are masked in all their logs from here on (bot/privacy/masking.py).
"""

from bot.privacy.masking import install as _install_log_masking

_install_log_masking()
