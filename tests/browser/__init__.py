"""End-to-end tests in JupyterLab and Voila through headless chromium (marker: browser)."""
