"""The agents' web console (aiohttp): live queue, claim, reply, transfer, notes, close,
hand back; tickets and callback requests; accounts (admin).

    python -m bot.console                          # started by `make run`
    python -m bot.console.admin create-user --role admin
"""
