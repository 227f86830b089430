// placeholder: filled in by the part that owns it
