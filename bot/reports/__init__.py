"""Citizens' reports (signalements) and complaints (réclamations): tickets with a short
reference, their tracking by the citizen, and the staff's handling (status, assignment,
notifications to the citizen on their channel). See docs/reports.md.

Used by the action server (the forms in actions/reports.py) and the console
(bot/console/reports_views.py).
"""
