"""The plugin's dialogs: Train remotely, Track remotely, and their shared parts."""
