"""Talking to a real Label Studio server: ``atool labelstudio push`` and ``pull``.

atool speaks Label Studio's REST API with ``requests`` (client.py) rather
than through label-studio-sdk: SDK 2.x pins numpy < 2.3 and
opencv-python-headless < 4.13, which would downgrade atool's own numpy and
OpenCV, and pulls pandas, nltk and a code generator besides. The one thing
the SDK would give us, its brush RLE codec, is small and is implemented in
brush.py; the integration suite (tests/integration/) checks it in both
directions against ``label_studio_sdk.converter.brush``, which is installed
with the server in its own environment (tools/labelstudio_env.sh).

Modules: client (HTTP, errors), project (find/create, config check), push,
pull, brush (Label Studio's brush RLE).
"""
