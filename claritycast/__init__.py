"""claritycast: Microsoft Clarity's daily metrics, kept as history and delivered as charts."""

__version__ = "0.1.0"
