"""`make clients`: the real coding agents, installed from the npm registry, against a deployment.

`python -m scripts.clients` brings up a deployment on loopback (scripts/stack.py) with one model
alias per `messages_api` mode, runs each agent headless with its config from clients/ (as a user
writes it), and checks its answer, the gateway's access log and the usage ledger. It runs in a
network namespace of its own holding only loopback, so nothing reaches beyond 127.0.0.1.
"""
