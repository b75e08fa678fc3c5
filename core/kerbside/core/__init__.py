"""Pieces shared by every Kerbside component: instants, identifiers, errors."""
