"""The Hugging Face token, kept in the OS keyring (never in a file or a log)."""

from __future__ import annotations

from isengard_desktop.base.errors import IsengardError

SERVICE = "isengard-desktop"
HF_TOKEN = "huggingface-token"


def set_hf_token(token: str) -> None:
    import keyring
    from keyring.errors import KeyringError

    try:
        if token.strip():
            keyring.set_password(SERVICE, HF_TOKEN, token.strip())
        elif keyring.get_password(SERVICE, HF_TOKEN) is not None:
            keyring.delete_password(SERVICE, HF_TOKEN)
    except (KeyringError, RuntimeError) as exc:
        raise IsengardError(f"The token could not be stored in the system keyring ({type(exc).__name__}); install "
                            "or unlock a keyring (e.g. GNOME Keyring or KWallet) and try again.") from exc


def has_hf_token() -> bool:
    import keyring
    from keyring.errors import KeyringError

    try:
        return keyring.get_password(SERVICE, HF_TOKEN) is not None
    except (KeyringError, RuntimeError):
        return False


# A token this process was given on its stdin (`models download --token-stdin`, run on a remote by this computer's
# app, whose keyring holds it); kept in memory only, never stored in the remote's keyring or a file.
_given_token: str | None = None


def use_hf_token(token: str | None) -> None:
    """Use ``token`` in this process instead of the keyring's (None or empty: back to the keyring)."""
    global _given_token
    _given_token = token.strip() if token and token.strip() else None


def get_hf_token() -> str | None:
    """The token from the keyring, or None when there is none (or no keyring can be reached).

    Read by the process that uses it (the download worker reads it itself), so the token never travels
    through a command line, an environment variable or a job file.
    """
    import keyring
    from keyring.errors import KeyringError

    if _given_token:
        return _given_token
    try:
        token = keyring.get_password(SERVICE, HF_TOKEN)
    except (KeyringError, RuntimeError):
        return None
    return token.strip() if token and token.strip() else None


COMFYUI_AUTH = "comfyui-auth-header"


def set_comfyui_auth(header: str) -> None:
    """The HTTP header a remote ComfyUI wants (``Authorization: Bearer …``); empty removes it."""
    import keyring
    from keyring.errors import KeyringError

    header = header.strip()
    if header and ":" not in header:
        from isengard_desktop.base.errors import ValidationError

        raise ValidationError("Write the header as Name: value (e.g. Authorization: Bearer abc123).")
    try:
        if header:
            keyring.set_password(SERVICE, COMFYUI_AUTH, header)
        elif keyring.get_password(SERVICE, COMFYUI_AUTH) is not None:
            keyring.delete_password(SERVICE, COMFYUI_AUTH)
    except (KeyringError, RuntimeError) as exc:
        raise IsengardError(f"The header could not be stored in the system keyring ({type(exc).__name__}); install "
                            "or unlock a keyring (e.g. GNOME Keyring or KWallet) and try again.") from exc


def get_comfyui_auth() -> tuple[str, str] | None:
    """(name, value) of the remote ComfyUI's auth header from the keyring, or None. Read by the process that sends
    it (the generation worker), so it never travels through a command line, a job file or a log."""
    import keyring
    from keyring.errors import KeyringError

    try:
        header = keyring.get_password(SERVICE, COMFYUI_AUTH)
    except (KeyringError, RuntimeError):
        return None
    if not header or ":" not in header:
        return None
    name, _, value = header.partition(":")
    return name.strip(), value.strip()
