"""SMTP AUTH: SASL mechanisms (mechanisms.py) and password hashes
(passwords.py). The protocol side (334 challenges, base64, cancel) is in
actors/smtp; the user database behind the Credentials port in
actors/users.py."""
