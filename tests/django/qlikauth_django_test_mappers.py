"""A custom USER_MAPPER for the tests."""

from qlikauth import QlikUser


def email_mapper(user):
    return QlikUser("CORP", f"{user.get_username()}@corp.example", [("role", "viewer")])
