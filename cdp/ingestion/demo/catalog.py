"""The fixed vocabulary demo people are drawn from: names, places, products, B2B accounts.

Plain data, so the generator stays deterministic whatever libraries are installed. Some names
carry accents and some have common nicknames, so normalization and matching have work to do.
"""

from __future__ import annotations

from dataclasses import dataclass

FIRST_NAMES = (
    "Anna", "Robert", "William", "Elizabeth", "Katherine", "Michael", "James", "Jennifer",
    "Alexander", "Margaret", "Thomas", "Daniel", "Sophie", "Lukas", "Emma", "Noah", "Olivia",
    "Liam", "Mia", "Lucas", "Chloé", "José", "Zoë", "Björn", "Ingrid", "Mateo", "Lucía", "Hannah",
    "Jonas", "Laura", "David", "Sarah", "Paul", "Julia", "Samuel", "Nora", "Victor", "Clara",
    "Oliver", "Isabel", "Henry", "Amélie", "Felix", "Charlotte", "Ethan", "Grace", "Leon",
    "Marie", "Nicholas", "Patricia", "Richard", "Susan", "Anthony", "Rebecca", "Andrew", "Helen",
    "Aisha", "Kenji", "Priya", "Wei",
)  # fmt: skip
NICKNAMES = {
    "Robert": "Bob", "William": "Bill", "Elizabeth": "Liz", "Katherine": "Kate",
    "Michael": "Mike", "James": "Jim", "Jennifer": "Jen", "Alexander": "Alex",
    "Margaret": "Maggie", "Thomas": "Tom", "Daniel": "Dan", "Samuel": "Sam",
    "Nicholas": "Nick", "Patricia": "Pat", "Richard": "Rick", "Anthony": "Tony",
    "Rebecca": "Becky", "Andrew": "Andy", "Isabel": "Izzy", "Susan": "Sue",
}  # fmt: skip
LAST_NAMES = (
    "Smith", "Müller", "García", "Johnson", "Brown", "Schneider", "Martin", "Rossi", "Dubois",
    "Jansen", "Williams", "Fischer", "López", "Taylor", "Weber", "Moreau", "Andersson", "Kowalski",
    "Novak", "O'Brien", "Murphy", "Wilson", "Becker", "Fernández", "Bianchi", "Lefèvre", "de Vries",
    "Nilsson", "Davies", "Evans", "Hoffmann", "Schäfer", "Romero", "Ricci", "Laurent", "Bakker",
    "Thompson", "White", "Clarke", "Wagner", "Koch", "Sánchez", "Colombo", "Bernard", "Visser",
    "Hughes", "Walker", "Wright", "Nakamura", "Patel", "Chen", "Kim", "Okafor", "Haddad",
)  # fmt: skip
EMAIL_DOMAINS = (
    "gmail.com", "gmail.com", "gmail.com", "yahoo.com", "outlook.com", "hotmail.com",
    "icloud.com", "proton.me", "gmx.de", "web.de", "orange.fr", "example.org",
)  # fmt: skip
DOMAIN_TYPOS = {
    "gmail.com": "gmial.com", "yahoo.com": "yaho.com", "outlook.com": "outlok.com",
    "hotmail.com": "hotmial.com", "icloud.com": "icloud.co", "gmx.de": "gmx.com",
}  # fmt: skip
STREET_NAMES = (
    "Main Street", "High Street", "Oak Avenue", "Station Road", "Park Lane", "Church Street",
    "Hauptstraße", "Bahnhofstraße", "Rue de la Paix", "Calle Mayor", "Via Roma", "Kerkstraat",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class City:
    name: str
    country: str
    postcodes: tuple[str, ...]
    phone_prefix: str  # international form, with the area code
    trunk_prefix: str  # how locals write the area code
    locale: str
    timezone: str


CITIES = (
    City("Berlin", "DE", ("10115", "10245", "10437", "12043"), "+49 30", "030", "de-DE",
         "Europe/Berlin"),
    City("Munich", "DE", ("80331", "80469", "81675"), "+49 89", "089", "de-DE", "Europe/Berlin"),
    City("London", "GB", ("SW1A 1AA", "EC1A 1BB", "N1 9GU", "SE1 7PB"), "+44 20", "020",
         "en-GB", "Europe/London"),
    City("Paris", "FR", ("75001", "75011", "75015"), "+33 1", "01", "fr-FR", "Europe/Paris"),
    City("Madrid", "ES", ("28001", "28004", "28013"), "+34 91", "91", "es-ES", "Europe/Madrid"),
    City("Amsterdam", "NL", ("1011 AB", "1052 JK", "1072 LH"), "+31 20", "020", "nl-NL",
         "Europe/Amsterdam"),
    City("Milan", "IT", ("20121", "20144"), "+39 02", "02", "it-IT", "Europe/Rome"),
    City("New York", "US", ("10001", "10013", "11201"), "+1 212", "(212)", "en-US",
         "America/New_York"),
    City("San Francisco", "US", ("94103", "94110"), "+1 415", "(415)", "en-US",
         "America/Los_Angeles"),
    City("Toronto", "CA", ("M5H 2N2", "M4C 1B5"), "+1 416", "(416)", "en-CA", "America/Toronto"),
    City("Stockholm", "SE", ("111 22", "114 35"), "+46 8", "08", "sv-SE", "Europe/Stockholm"),
    City("Sydney", "AU", ("2000", "2010"), "+61 2", "(02)", "en-AU", "Australia/Sydney"),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Product:
    sku: str
    name: str
    category: str
    price: float

    @property
    def slug(self) -> str:
        return self.name.lower().replace(" ", "-")


PRODUCTS = (
    Product("SH-001", "Trail Runner Shoe", "Shoes", 129.0),
    Product("SH-002", "City Sneaker", "Shoes", 89.0),
    Product("SH-003", "Leather Boot", "Shoes", 179.0),
    Product("AP-001", "Merino T-Shirt", "Apparel", 49.0),
    Product("AP-002", "Rain Jacket", "Apparel", 149.0),
    Product("AP-003", "Fleece Hoodie", "Apparel", 69.0),
    Product("AP-004", "Running Shorts", "Apparel", 35.0),
    Product("AC-001", "Canvas Backpack", "Accessories", 79.0),
    Product("AC-002", "Water Bottle", "Accessories", 19.5),
    Product("AC-003", "Wool Socks (3-pack)", "Accessories", 24.0),
    Product("AC-004", "Sunglasses", "Accessories", 99.0),
    Product("OD-001", "Two-Person Tent", "Outdoor", 249.0),
    Product("OD-002", "Sleeping Bag", "Outdoor", 139.0),
    Product("OD-003", "Headlamp", "Outdoor", 29.9),
    Product("OD-004", "Camping Stove", "Outdoor", 59.0),
    Product("GF-001", "Gift Card", "Gifts", 50.0),
)
CONTENT_PAGES = (
    ("/", "Home"),
    ("/pricing", "Pricing"),
    ("/about", "About us"),
    ("/blog/trail-running-tips", "10 trail running tips"),
    ("/blog/packing-list", "The ultimate packing list"),
    ("/stores", "Find a store"),
    ("/help/shipping", "Shipping and returns"),
    ("/sale", "Sale"),
)
CAMPAIGNS = (
    {"source": "google", "medium": "cpc", "name": "spring_sale"},
    {"source": "newsletter", "medium": "email", "name": "weekly_digest"},
    {"source": "instagram", "medium": "social", "name": "trail_season"},
    {"source": "partner-blog", "medium": "referral", "name": "gear_review"},
)
REFERRERS = ("https://www.google.com/", "https://duckduckgo.com/", "https://www.bing.com/", "")
USER_AGENTS = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
)
MOBILE_DEVICES = (
    ("ios", "Apple", "iPhone15,2", "iOS", "17.4"),
    ("ios", "Apple", "iPhone14,5", "iOS", "17.2"),
    ("android", "Samsung", "SM-S911B", "Android", "14"),
    ("android", "Google", "Pixel 8", "Android", "14"),
)
APP_SCREENS = ("Home", "Search", "Product Detail", "Cart", "Account")


@dataclass(frozen=True, slots=True)
class Account:
    group_id: str
    name: str
    industry: str
    employees: int
    plan: str


ACCOUNTS = (
    Account("acct-acme", "Acme Outdoor GmbH", "Retail", 240, "enterprise"),
    Account("acct-globex", "Globex Travel", "Travel", 1200, "enterprise"),
    Account("acct-initech", "Initech", "Software", 85, "business"),
    Account("acct-umbrella", "Umbrella Events", "Events", 40, "business"),
    Account("acct-hooli", "Hooli Sports Club", "Sports", 15, "team"),
    Account("acct-stark", "Stark Adventures", "Tourism", 60, "business"),
    Account("acct-wayne", "Wayne Field Services", "Construction", 510, "enterprise"),
    Account("acct-tyrell", "Tyrell Schools", "Education", 300, "business"),
    Account("acct-soylent", "Soylent Catering", "Hospitality", 25, "team"),
    Account("acct-wonka", "Wonka Team Retreats", "Hospitality", 12, "team"),
)
CRM_SEGMENTS = ("VIP", "Regular", "Regular", "Regular", "At risk", "New")
ACCOUNT_MANAGERS = ("Jordan Blake", "Sam Rivera", "Alex Chen", "Morgan Lee")
