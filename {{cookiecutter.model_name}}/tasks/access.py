"""Access for the front end's users (Cognito groups)."""
