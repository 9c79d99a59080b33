"""course_lib: the small, tested package behind the course notebooks.

Each module holds one concept in its final form; the notebooks build it step by step and
then import it from here. See README.md for the course map.
"""

__version__ = "0.1.0"
