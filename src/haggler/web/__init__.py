"""The web app: HTML pages, their scripts and styles, and the charting library, served locally."""
