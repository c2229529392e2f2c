"""The wiring: settings, the conversation engine, the web app and the command line."""
