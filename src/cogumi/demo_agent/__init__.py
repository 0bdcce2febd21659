"""``cogumi demo-agent``: a deliberately vulnerable, tool-using agent.

It speaks the native agent test contract (``POST /message``, ``POST /health``)
and makes real HTTP calls through ``HTTP_PROXY``, so the whole product can be
shown and tested without a customer agent. Each weakness is a switch, so a test
can prove that the engine finds exactly the flaws that are turned on and stays
quiet on the hardened and trap profiles. It never imports the database stack.
"""
