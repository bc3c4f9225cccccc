from .addition import AdditionData, addition_tokenizer
from .tokenizer import CharTokenizer, load_tokenizer

__all__ = ["AdditionData", "addition_tokenizer", "CharTokenizer", "load_tokenizer"]
