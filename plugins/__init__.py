"""arrowbulk's built-in plugins, one folder each, registered through the same entry points as
third-party packages (see ``[project.entry-points.arrowbulk]`` in pyproject.toml).

Every folder has the same shape: ``__init__.py`` holds the hook implementations (marked
``trylast`` so an installed plugin of the same name wins), ``input.py`` / ``output.py`` the
plugin classes, and the config schemas live in ``schemas/<plugin>/``.
"""
