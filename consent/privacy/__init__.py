"""Privacy requests: creation and status (``requests``), erasure by crypto-shredding
(``erasure``), the suppression list (``suppression``) and access (DSAR) exports (``access``)."""
