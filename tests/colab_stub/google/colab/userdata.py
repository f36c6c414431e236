"""google.colab.userdata for tests: no secret is shared with the notebook."""


class SecretNotFoundError(Exception):
    pass


def get(key: str) -> str:
    raise SecretNotFoundError(key)
