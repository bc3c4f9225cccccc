from .addition import AdditionData, addition_tokenizer
from .brackets import BracketData, bracket_tokenizer
from .tokenizer import CharTokenizer, load_tokenizer

__all__ = ["AdditionData", "addition_tokenizer", "BracketData", "bracket_tokenizer", "CharTokenizer", "load_tokenizer"]
