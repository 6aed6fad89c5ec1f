"""A custom USER_MAPPER for the tests."""

from qlikauth import QlikUser


def email_mapper(user):
    return QlikUser("CORP", f"{user.get_username()}@corp.example", [("role", "viewer")])


def refused_mapper(user):
    # A value Qlik refuses (';' would let it compose another identity): QlikUser raises
    # IdentityError.
    return QlikUser("CORP", f"{user.get_username()}; UserId=sa_repository")
