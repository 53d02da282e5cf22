"""The application on top of the three rooms: the ``spicebridge`` command line, the demo
pipeline and its report.

Imports run one way, ``spicebridge`` <- ``characterization`` <- ``nnsim`` <- ``imc``: this
package sees them all and nothing of ours imports it.
"""
