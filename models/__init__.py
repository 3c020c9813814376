"""The shipped model artifacts and their cards (installed as the package ``aer_models``)."""
