"""Privacy requests: creation and status (``requests``), erasure by crypto-shredding
(``erasure``) and the suppression list (``suppression``)."""
