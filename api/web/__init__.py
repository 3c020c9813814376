"""The HTTP API: the Flask app factory, one blueprint per resource, typed request and response
models (which generate the OpenAPI document), error handlers and serializers. It holds no SQL:
every query lives in :mod:`api.store`."""
