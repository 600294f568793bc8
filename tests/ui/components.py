"""Reading a built app's components (``demo.get_config_file()``) by their elem_id, for the UI tests."""


def component(demo, elem_id):
    """The config dict of the component with ``elem_id`` (None if the app has none)."""
    return next((c for c in demo.get_config_file()["components"] if c["props"].get("elem_id") == elem_id), None)
