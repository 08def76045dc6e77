"""The customer web chat: an embeddable widget (``webchat/static``) that talks to Rasa's socket.io
channel, and a tiny static server for its demo page (``python -m webchat serve``)."""
