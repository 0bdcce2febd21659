"""Users, orgs, memberships, roles, sessions, API keys, invitations, audit log."""
