"""Authentication and authorization: who asks, and may they?"""
