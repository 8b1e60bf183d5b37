"""Browser tests: a real server driven through Debian's Chromium."""
