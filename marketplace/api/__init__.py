"""REST API v1: one module per resource, each holding its endpoints' serializers and views.

A view is thin: validate (``inputs``), call one service or selector, serialise. Input serializers
validate shapes and look up referenced rows; output serializers shape data. Domain rules (window
order, node sizes, who may do what) live in the services, so the web forms and the API share one
set of rules. Shared JSON field types are in ``fields``; who the caller is, in ``permissions``.
"""
