from genrec_core.data.interactions import Interactions, Vocabulary

__all__ = ["Interactions", "Vocabulary"]
