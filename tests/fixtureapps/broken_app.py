raise ImportError("this app cannot be imported")
