"""The domain store: settings, engine and sessions, tables, every query and state change, the
upload folder layout and the queue contract. It imports no Flask: the API and the workers both
use it."""
