"""Errors the pipeline raises for users: their messages are fit to show in the UI as they are."""


class InputError(ValueError):
    """Bad input (unreadable image, empty question ...): the message says what to do instead."""


class ModelError(RuntimeError):
    """A model could not serve a valid request (out of memory ...): the message says what to try."""


class StoreError(RuntimeError):
    """The feedback store could not save or read (database down, disk full ...): the message says to try again."""
