"""The bundled XSDs and WSDLs (iWmo/iJw 3.2, StUF-GGk, StUF 03.01), shipped as package data
``ggk_schemas`` so an installed wheel finds them through :mod:`importlib.resources`."""
