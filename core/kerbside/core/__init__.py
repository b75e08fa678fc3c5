"""Pieces shared by every Kerbside component: instants, identifiers, the site model, errors,
the version."""
