"""sleap-rtc-plugin: remote training and inference for SLEAP over WebRTC."""

__version__ = "0.1.0"
