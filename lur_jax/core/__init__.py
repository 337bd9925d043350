"""The functional core: LUR, losses, steps, methods, the data protocol and metrics
(nothing here knows a study or a device)."""
