"""Server-rendered pages (Django templates + htmx): the capacity board, sign-in and sign-up, the
provider's and the buyer's pages, the admin match monitor. Views are thin: they validate a form,
call one service or selector, and render; forms map a service's ``DomainError.field`` to the field."""
