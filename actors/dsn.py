"""placeholder until the dns branch lands (not committed)"""


def build_dsn(**kw):
    raise NotImplementedError
