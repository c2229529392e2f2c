"""Channel adapters: each turns a chat app's payloads into IncomingMessage and back."""
