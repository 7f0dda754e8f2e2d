"""What the commune publishes to its citizens besides FAQ answers, and what it asks them.

- `subscriptions`: alert topics (crise, travaux, evenements, ecoles) per channel conversation;
- `crisis`: the active crisis message, mentioned at greeting and answered first;
- `rumours`: "vrai / faux" statements with their official answer, matched at runtime;
- `polls`: short consultations, one vote per citizen, results;
- `matching`: the text similarity the crisis and rumour matching share;
- `texts`: what the citizens read (French).

Services are synchronous (SQLAlchemy); the action server and the console call them in a
thread. Broadcasts themselves are sent by `bot.broadcast`.
"""
