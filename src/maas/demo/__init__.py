"""The demo models `maas serve` installs: trained here from data shipped in scikit-learn,
never downloaded."""
