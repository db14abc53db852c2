"""Harnesses the tests and bench/ share: real genjob processes and in-process workers.

Not product code: nothing under genjob/, worker/, operator/ or api/ imports these. Imported as
`tests.support` (the repository root is on sys.path in the editable install and under pytest).
"""
