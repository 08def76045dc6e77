"""Input channels of the Rasa server that live in other services (help desks, messengers)."""
