"""Write the JSONL datasets of programs/data/ from the templates and word lists below.

Run from the repository root: ``python programs/data/build.py``. The output is
deterministic (fixed seeds), so rerunning it rewrites the same files; the JSONL
files are committed, this script is how they were made and how to extend them.

Each task keeps its dev set honest the same way: dev items come from templates,
phrasings or words that the train split never uses (about a quarter of each
pool), so a dev score measures the skill rather than recall of a sentence.
"""

from __future__ import annotations

import json
import random
import re
import string
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).parent


def write_jsonl(name: str, rows: list[dict]) -> None:
    path = HERE / name
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{path.relative_to(HERE.parent.parent)}: {len(rows)} rows")


def held_out(items: list, every: int = 4, offset: int = 3) -> tuple[list, list]:
    """Split a pool into (train, dev): every ``every``-th item, from ``offset``, goes to dev only."""
    train = [x for i, x in enumerate(items) if i % every != offset]
    dev = [x for i, x in enumerate(items) if i % every == offset]
    return train, dev


def fill_unique(make: Callable[[random.Random], dict | None], n: int, rng: random.Random, key: str | tuple[str, ...],
                seen: set | None = None, tries: int = 200) -> list[dict]:
    """Call ``make`` until ``n`` rows with distinct ``row[key]`` exist (also distinct from ``seen``)."""
    seen = set() if seen is None else seen
    keys = (key,) if isinstance(key, str) else key
    rows: list[dict] = []
    for _ in range(n * tries):
        if len(rows) == n:
            break
        row = make(rng)
        if row is None:
            continue
        value = tuple(str(row[k]) for k in keys)
        if value in seen:
            continue
        seen.add(value)
        rows.append(row)
    if len(rows) < n:
        raise RuntimeError(f"only {len(rows)} distinct rows of {n} for key {key!r}; add templates")
    return rows


def fill(template: str, rng: random.Random, slots: dict[str, list[str]]) -> str:
    """Replace each ``{slot}`` with a random value from ``slots``; ``{slot2}`` differs from ``{slot}``."""
    chosen: dict[str, str] = {}

    def pick(match: re.Match) -> str:
        name = match.group(1)
        if name not in chosen:
            base = name.rstrip("0123456789")
            taken = {v for k, v in chosen.items() if k.rstrip("0123456789") == base}
            options = [v for v in slots[base] if v not in taken]
            chosen[name] = rng.choice(options)
        return chosen[name]

    return re.sub(r"\{(\w+)\}", pick, template)


# ---------------------------------------------------------------------------
# Sentence classification: support-ticket intent
# ---------------------------------------------------------------------------

INTENTS: dict[str, list[str]] = {
    "billing": [
        "I was charged twice for order {order}. Can you fix the duplicate charge?",
        "Why is there a charge of {amount} from you on my card that I don't recognize?",
        "Please send me an invoice for my {month} payment.",
        "My monthly bill went up to {amount} without any notice. Why?",
        "How do I update the credit card you use for my subscription payments?",
        "The payment for order {order} failed even though my card is valid.",
        "Can I pay by bank transfer instead of by card?",
        "I need a receipt showing our company VAT number for the {amount} charge.",
        "You billed me {amount} for the premium plan but I am on the basic plan.",
        "Is there a discount if I pay yearly instead of monthly?",
        "My invoice lists the wrong billing address.",
        "I was charged a late fee of {amount} but I paid on time.",
        "Do you accept PayPal for payments?",
        "The coupon code was not applied and I paid the full price of {amount}.",
        "Can you explain the extra {amount} on my latest statement?",
        "My bank says the payment to your company is still pending after {n} days.",
        "How do I download my past invoices for our accountant?",
        "The free trial ended and you charged my card without a reminder.",
        "The price at checkout was higher than the price on the product page.",
        "Can I split the {amount} payment across two cards?",
        "Why was my payment declined when there is enough money in my account?",
        "I'd like to move my billing date to the first of the month.",
        "The sales tax on my order looks wrong; I was charged {amount} in tax.",
        "Could you resend the invoice for order {order}? I can't find the email.",
        "Our company needs to pay with a purchase order. Is that possible?",
        "There is a pending authorization of {amount} on my card from your store.",
        "I want to switch my payment method from PayPal to a debit card.",
        "The total on my bill does not match the price I agreed to on the phone.",
        "Can I get a quote for {n} licenses before we pay?",
        "You keep charging my old card even though I added a new one.",
        "Why did the annual renewal cost {amount} when it was cheaper last year?",
        "My statement shows two subscriptions but I only signed up for one.",
    ],
    "shipping": [
        "Where is my package? Order {order} was supposed to arrive on {day}.",
        "The tracking number for order {order} hasn't updated in days.",
        "The parcel is marked as delivered but there is nothing at my door.",
        "How long does delivery to {city} usually take?",
        "Can you send order {order} to a different address? I just moved to {city}.",
        "The courier left my {product} with a neighbor I don't know.",
        "Do you ship to {country}?",
        "My order has been stuck in customs for {n} days.",
        "Is express delivery available for the {product}?",
        "The delivery driver never showed up during the time slot on {day}.",
        "{carrier} says the address on my parcel is incomplete. What address did you give them?",
        "Can you hold my parcel at the {carrier} pickup point instead of bringing it to my house?",
        "When will my {product} be sent out? I ordered it {n} days ago.",
        "I only received one of the two boxes for order {order}.",
        "Can I schedule the delivery for {day} morning?",
        "The tracking page has said 'label created' for a week now.",
        "Nobody was home and the parcel went back to your warehouse. Can you send it out again?",
        "Which courier do you use for deliveries to {city}?",
        "Can I collect my order in person instead of having it delivered?",
        "The estimated arrival date keeps moving. Will it get here before {day}?",
        "My order shows as dispatched but {carrier} says they never got the parcel.",
        "Could you send the {product} first and the rest of the order later?",
        "Do you deliver on weekends?",
        "The box was delivered to the wrong apartment in my building.",
        "I need the {product} by {day} for a birthday. Which delivery option gets it there in time?",
        "My delivery is late again, the second time this month.",
        "How can I track an order I placed as a guest?",
        "The parcel has been 'out for delivery' since yesterday morning.",
        "Could you tell the driver to leave the package at the back door?",
        "Is there a way to speed up a shipment that is already on its way?",
        "The parcel for order {order} is sitting at the {carrier} depot in {city}. Why isn't it moving?",
        "How much longer will the {product} take to reach {country}?",
    ],
    "technical": [
        "The app crashes every time I open the {feature} screen on my {device}.",
        "I get error {error} when I try to upload a file.",
        "The website won't load in {browser}; it just shows a blank page.",
        "Notifications stopped working after the latest update.",
        "Syncing between my {device} and my laptop isn't working.",
        "The search bar returns no results, even for items I know exist.",
        "Since version {version}, your app drains the battery of my {device} really fast.",
        "The export to PDF button does nothing when I click it.",
        "I keep getting a 'connection timed out' message in the app.",
        "The {feature} page is extremely slow and takes a minute to load.",
        "After updating to version {version}, the app freezes on the start screen.",
        "Images don't show up in the {feature} section, only broken icons.",
        "The dark mode setting resets every time I restart the app.",
        "The app won't install on my {device}. Is it supported?",
        "The video player stutters and the sound is out of sync.",
        "When I click save I get error {error} and my changes are lost.",
        "Your API has returned a 500 error for every request since this morning.",
        "The calendar integration shows my events at the wrong time.",
        "Your browser extension stopped working in {browser}.",
        "The app shows a white screen after I tap the {feature} tab.",
        "The barcode scanner in the app can't focus on my {device}.",
        "Files larger than 10 MB fail to upload with error {error}.",
        "The keyboard covers the text box on the {feature} screen, so I can't type.",
        "The desktop app uses 100% of the CPU even when it's idle.",
        "Push notifications arrive hours late on my {device}.",
        "Offline mode doesn't keep my edits; they are gone when I reconnect.",
        "The charts on the {feature} dashboard have been empty since the update.",
        "Printing cuts off the right side of every page.",
        "The setup wizard hangs at step 3 and never finishes.",
        "The page layout is broken in {browser}: buttons overlap the text.",
        "The app closes by itself whenever I rotate my {device}.",
        "Voice input in the {feature} screen doesn't pick up anything I say.",
    ],
    "account": [
        "I forgot my password and the reset email never arrives.",
        "How do I change the email address on my account to {email}?",
        "My account was locked after too many sign-in attempts.",
        "I want to delete my account and all of my personal data.",
        "Someone signed in to my account from {country}. I think I was hacked.",
        "How do I turn on two-factor authentication?",
        "I lost my phone and can't get the two-factor code to sign in.",
        "Can I change my username? I don't like the one I picked.",
        "Please update the name on my profile to {name}.",
        "I made two accounts by mistake. Can you merge them?",
        "How do I add a second user to our family account?",
        "The verification code you texted me to sign in doesn't work.",
        "I signed up with Google and now I want to log in with a password instead.",
        "I can't log in; it says my email isn't registered, but I've used it for years.",
        "How do I change the phone number linked to my account?",
        "Where can I download a copy of all the data you hold about me?",
        "I need to make my colleague {name} the owner of our account.",
        "My profile shows the wrong date of birth and I can't edit it.",
        "How do I reactivate the account I closed last year?",
        "I never got the confirmation email to activate my new account.",
        "Can I change the security questions on my account?",
        "The sign-up form keeps saying my password is too weak. What are the rules?",
        "I want to stop the marketing emails but keep my membership.",
        "How do I sign out of all my devices at once?",
        "{name} left the company. How do I remove them from our team account?",
        "Can you switch my account language to {language}?",
        "It says 'invalid credentials' even though my password is right.",
        "How do I make my profile private?",
        "Please close my account; I won't be using the service anymore.",
        "I'd like to change the recovery email on my account.",
        "How do I give {name} admin rights on our workspace?",
        "My old email {email} no longer works. How do I get back into my account?",
    ],
    "returns": [
        "I'd like to return the {product} I bought last week. How do I do that?",
        "The {product} I received is the wrong size. Can I exchange it for a {size}?",
        "I sent back order {order} {n} days ago. When will I get my refund?",
        "The {product} arrived broken and I want to send it back.",
        "Can I return an item I bought on sale?",
        "You sent me a {color} {product} but I ordered a black one. I'd like to exchange it.",
        "How long do I have to return the {product}?",
        "Do I have to pay for the return label?",
        "Can I bring the {product} back to one of your stores instead of mailing it?",
        "The {product} doesn't do what I need. Can I get my money back?",
        "I'd like to exchange the {product} for a different color.",
        "My return was marked as received, but the refund hasn't shown up yet.",
        "The {product} stopped working after two days. Can I swap it for a new one?",
        "Where do I find the return form for order {order}?",
        "Can I return part of my order and keep the rest?",
        "I bought the {product} as a gift. Can the person exchange it without a receipt?",
        "I want to return the {product}; it's still unopened in the box.",
        "Is there a restocking fee if I return the {product}?",
        "I accidentally ordered two of the {product}. Can I send one back?",
        "Can I swap the {product} for a cheaper model and get the difference back?",
        "The {product} looks nothing like the photos. I want a refund.",
        "How do I start a return in the mobile app?",
        "My return was rejected. Why?",
        "The {product} is missing parts. Should I send it back?",
        "Are returns free for members?",
        "I'd like a replacement {product}; the one I got has a scratch on it.",
        "Can I drop off my return at a {carrier} location?",
        "The {size} is too small. Please swap it for a bigger size.",
        "What is your return policy for opened electronics?",
        "I changed my mind about the {product}; it's still in the original packaging.",
        "The {product} I got is used, not new. I want to send it back for a new one.",
        "Can I return the {product} after 30 days if I never used it?",
    ],
}

TICKET_SLOTS = {
    "order": [f"#{n}" for n in (48213, 50977, 61402, 73318, 80045, 91276, 33871, 22690, 57734, 66102, 40018, 78853)],
    "amount": ["$12.99", "$49", "$19.50", "$120", "$8.75", "$230", "€35", "€64.20", "£15", "£89", "$5", "$310"],
    "month": ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
              "November", "December"],
    "n": ["2", "3", "4", "5", "6", "8", "10", "12", "14", "20"],
    "day": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "the 14th", "the 22nd"],
    "city": ["Denver", "Lyon", "Manchester", "Toronto", "Austin", "Leeds", "Portland", "Munich", "Dublin",
             "Melbourne", "Seattle", "Glasgow"],
    "country": ["Canada", "Norway", "Brazil", "Japan", "Ireland", "Mexico", "Poland", "Australia", "Kenya",
                "Portugal"],
    "carrier": ["UPS", "FedEx", "DHL", "USPS", "Royal Mail", "the post office"],
    "product": ["blender", "rain jacket", "headphones", "coffee maker", "backpack", "desk lamp", "running shoes",
                "keyboard", "phone case", "winter coat", "water bottle", "tent", "smartwatch", "rice cooker",
                "office chair", "yoga mat"],
    "size": ["small", "medium", "large", "size 9", "size 42", "XL"],
    "color": ["red", "blue", "green", "grey", "white", "yellow"],
    "device": ["iPhone 13", "Pixel 7", "Samsung tablet", "iPad", "Android phone", "Windows laptop", "MacBook",
               "Chromebook"],
    "feature": ["settings", "reports", "messages", "projects", "calendar", "photos", "team", "history"],
    "error": ["E-403", "0x80070005", "ERR_502", "code 17", "E1042", "503", "SYNC-9"],
    "browser": ["Chrome", "Firefox", "Safari", "Edge", "Opera"],
    "version": ["4.2", "5.0.1", "3.9", "6.1", "2.14"],
    "email": ["ana.ruiz@example.com", "j.kim@example.org", "tom.b@example.net", "priya88@example.com"],
    "name": ["Ana Ruiz", "James Kim", "Tom Baker", "Priya Nair", "Olga Petrova", "Sam Okafor", "Lena Vogel"],
    "language": ["Spanish", "German", "French", "Japanese", "Portuguese", "Italian"],
}

TICKET_OPENERS = ["", "", "", "Hi,", "Hello,", "Hi there,", "Hello team,", "Good morning,", "Hey,",
                  "Quick question:", "Urgent:", "Dear support,", "Sorry to bother you."]
TICKET_CLOSERS = ["", "", "", "Thanks.", "Thank you!", "Please help.", "Thanks in advance.",
                  "Can you look into this?", "Any help is appreciated.", "Regards, {name}", "Cheers.",
                  "This is really frustrating."]


def _ticket(template: str, rng: random.Random) -> str:
    opener = rng.choice(TICKET_OPENERS)
    closer = fill(rng.choice(TICKET_CLOSERS), rng, TICKET_SLOTS)
    body = fill(template, rng, TICKET_SLOTS)
    if opener.endswith(",") and not re.match(r"I\b|\{", template):
        body = body[0].lower() + body[1:]  # "Hi, how do I ...", but "Hi, I ..." and "Hi, Royal Mail ..."
    text = " ".join(part for part in (opener, body, closer) if part)
    roll = rng.random()
    if roll < 0.15:
        text = text.lower()  # people type tickets in lower case often enough to matter
    elif roll < 0.22:
        text = text.rstrip(".!")
    return text


def _ticket_maker(templates: list[str], label: str) -> Callable[[random.Random], dict]:
    return lambda r: {"text": _ticket(r.choice(templates), r), "label": label}


def build_classify(rng: random.Random) -> None:
    train: list[dict] = []
    dev: list[dict] = []
    seen: set = set()
    for label, templates in INTENTS.items():
        train_templates, dev_templates = held_out(templates)
        train += fill_unique(_ticket_maker(train_templates, label), 80, rng, "text", seen)
        dev += fill_unique(_ticket_maker(dev_templates, label), 44, rng, "text", seen)
    rng.shuffle(train)
    rng.shuffle(dev)
    write_jsonl("classify.train.jsonl", train)
    write_jsonl("classify.dev.jsonl", dev)


# ---------------------------------------------------------------------------
# Named-entity tagging: BIO tags for PER, ORG, LOC on pre-split tokens
# ---------------------------------------------------------------------------

NER_TEMPLATES = [
    "{PER} works for {ORG} in {LOC} .",
    "Yesterday {PER} met {PER2} at the {ORG} office in {LOC} .",
    "{ORG} announced a new factory near {LOC} .",
    "{PER} was born in {LOC} and moved to {LOC2} in 1998 .",
    "A delegation from {LOC} , led by {PER} , visited {ORG} on Friday .",
    "Shares of {ORG} rose after {PER} became chief executive .",
    "{PER} and {PER2} founded {ORG} in 2011 .",
    "Flights from {LOC} to {LOC2} were cancelled because of the storm .",
    "According to {ORG} , prices in {LOC} fell by 3 percent .",
    "{PER} said the deal with {ORG} was good news for {LOC} .",
    "We spent the summer in {LOC} with {PER} .",
    "{PER} studied law at {ORG} before moving to {LOC} .",
    "{ORG} hired {PER} as its new coach .",
    "Police in {LOC} are looking for a man who stole a car .",
    "{PER} will speak at a conference in {LOC} next month .",
    "Tickets for the concert by {PER} sold out in {LOC} .",
    "{ORG} and {ORG2} agreed to merge .",
    "{PER} , a spokesperson for {ORG} , declined to comment .",
    "The train to {LOC} leaves at nine .",
    "My friend {PER} lives near {LOC} .",
    "{ORG} opened its first store in {LOC} .",
    "Heavy rain is expected in {LOC} and {LOC2} on Sunday .",
    "{PER} thanked the fans in {LOC} after the match .",
    "{PER} joined {ORG} after ten years at {ORG2} .",
    "The {ORG} report was published on Monday .",
    "{PER} drove from {LOC} to {LOC2} in six hours .",
    "Students from {LOC} won a science prize from {ORG} .",
    "{PER} told reporters that {ORG} would cut 200 jobs .",
    "Is {PER} still working at {ORG} ?",
    "Visitors to {LOC} can take a boat tour of the old harbor .",
    "{PER} bought a house in {LOC} last year .",
    "The new head of {ORG} is {PER} .",
    "{ORG} moved its headquarters from {LOC} to {LOC2} .",
    "Officials at {ORG} confirmed the news on Tuesday .",
    "{PER} 's new book is set in {LOC} .",
    "In {LOC} , {PER} opened a small bakery .",
    "{PER} emailed {PER2} about the contract with {ORG} .",
    "Thousands of people marched through {LOC} on Saturday .",
    "{PER} signed a two-year contract with {ORG} .",
    "A delegation from {ORG} arrived in {LOC} this morning .",
    "Have you ever been to {LOC} ?",
    "{PER} called {PER2} from the airport in {LOC} .",
    "The meeting was moved to Thursday afternoon .",
    "Prices rose again this week , the third time this year .",
    "She said the results were better than expected .",
    "The museum will stay closed until the end of May .",
    "{PER} won the race in {LOC} for the second time .",
    "Engineers from {ORG} repaired the bridge in {LOC} .",
    "{PER} , who grew up in {LOC} , now teaches at {ORG} .",
    "{ORG} said profits doubled in {LOC} and {LOC2} .",
    "Last week {PER} visited relatives in {LOC} .",
    "The ship sailed from {LOC} to {LOC2} with 40 passengers .",
]

FIRST_NAMES = ["Maria", "John", "Aisha", "Kenji", "Olga", "Pedro", "Fatima", "Liam", "Chen", "Sofia", "Ahmed",
               "Emma", "Ivan", "Grace", "Mateo", "Hannah", "Ravi", "Lucia", "Tomas", "Nora", "Yusuf", "Elena",
               "Daniel", "Amara", "Oskar", "Mei", "Samuel", "Ines", "Kwame", "Julia", "Arjun", "Clara"]
LAST_NAMES = ["Lopez", "Smith", "Khan", "Tanaka", "Ivanova", "Santos", "Haddad", "Murphy", "Wang", "Rossi",
              "Nasser", "Brown", "Petrov", "Okafor", "Garcia", "Schmidt", "Patel", "Moreno", "Novak", "Berg",
              "Demir", "Popescu", "Cohen", "Mensah", "Lindqvist", "Zhou", "Adeyemi", "Costa", "Boateng",
              "Weber", "Sharma", "Dubois"]
ORGS = ["Acme Corporation", "Northwind Bank", "Microsoft", "Toyota", "United Nations", "Red Cross",
        "World Health Organization", "Oxford University", "Siemens", "Bluebird Airlines", "Greenfield Foods",
        "Reuters", "Real Madrid", "Harvard University", "Nokia", "Atlas Insurance", "Samsung", "UNICEF",
        "Silverline Motors", "European Central Bank", "Stanford University", "Orion Software", "BBC", "Pfizer",
        "Maple Leaf Rail", "Tesla", "Helios Energy", "Greenpeace", "Juventus", "Kyoto University",
        "Nordic Shipping Group", "IKEA"]
LOCS = ["Paris", "New York", "Tokyo", "Nairobi", "Berlin", "Rio de Janeiro", "Canada", "Mumbai", "Lake Geneva",
        "South Africa", "Madrid", "Cairo", "Sydney", "Texas", "Oslo", "Buenos Aires", "Vietnam", "Lisbon",
        "Chicago", "the Alps", "Istanbul", "Scotland", "Seoul", "Lagos", "Mexico City", "Peru", "Hamburg",
        "New Zealand", "Kraków", "Dubai", "Sicily", "Vancouver"]


def _person(r: random.Random, firsts: list[str], lasts: list[str]) -> str:
    return r.choice(firsts) if r.random() < 0.3 else f"{r.choice(firsts)} {r.choice(lasts)}"


def _ner_row(template: str, r: random.Random, pools: dict[str, list[str]]) -> dict:
    tokens: list[str] = []
    tags: list[str] = []
    used: set[str] = set()
    for piece in template.split():
        match = re.fullmatch(r"\{(PER|ORG|LOC)\d?\}", piece)
        if not match:
            tokens.append(piece)
            tags.append("O")
            continue
        kind = match.group(1)
        while True:
            if kind == "PER":
                value = _person(r, pools["first"], pools["last"])
            else:
                value = r.choice(pools[kind])
            if value not in used:
                break
        used.add(value)
        words = value.split()
        if kind == "LOC" and words[0] == "the":  # "the Alps": the article stays outside the entity
            tokens.append("the")
            tags.append("O")
            words = words[1:]
        for i, word in enumerate(words):
            tokens.append(word)
            tags.append(("B-" if i == 0 else "I-") + kind)
    if tokens[0] == "the":
        tokens[0] = "The"
    return {"tokens": tokens, "tags": tags, "text": _detokenize(tokens)}


def _detokenize(tokens: list[str]) -> str:
    text = " ".join(tokens)
    text = re.sub(r" ([.,?!])", r"\1", text)
    return text.replace(" 's", "'s")


def build_ner(rng: random.Random) -> None:
    train_templates, dev_templates = held_out(NER_TEMPLATES)
    # Dev mixes seen and unseen names: half of each name list never appears in train.
    names = {"first": FIRST_NAMES, "last": LAST_NAMES, "ORG": ORGS, "LOC": LOCS}
    split = {k: held_out(v, every=3, offset=2) for k, v in names.items()}
    train_pools = {k: tr for k, (tr, _) in split.items()}
    dev_pools = {k: tr + dv for k, (tr, dv) in split.items()}
    dev_only = {k: dv for k, (_, dv) in split.items()}
    seen: set = set()
    train = fill_unique(lambda r: _ner_row(r.choice(train_templates), r, train_pools), 320, rng, "text", seen)

    def make_dev(r: random.Random) -> dict:
        # Half the dev sentences come from templates train never saw; all draw on unseen names too.
        pools = dev_only if r.random() < 0.5 else dev_pools
        template = r.choice(dev_templates if r.random() < 0.5 else train_templates)
        return _ner_row(template, r, pools)

    dev = fill_unique(make_dev, 80, rng, "text", seen)
    write_jsonl("ner.train.jsonl", train)
    write_jsonl("ner.dev.jsonl", dev)


# ---------------------------------------------------------------------------
# Extractive QA: short fictional passages, answers are verbatim spans
# ---------------------------------------------------------------------------

NUMBER_WORDS = ["two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"]
SMALL_CITIES = ["Porto", "Tampere", "Ghent", "Cork", "Graz", "Bergen", "Arequipa", "Mysore", "Kumasi", "Hobart",
                "Bremen", "Split", "Tartu", "Galway", "Salzburg", "Valparaíso", "Da Nang", "Aarhus", "Kochi",
                "Cusco"]


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _bio_slots(r: random.Random) -> dict[str, str]:
    first, last = r.choice(FIRST_NAMES), r.choice(LAST_NAMES)
    city, city2 = r.sample(SMALL_CITIES, 2)
    year = r.randint(1940, 1985)
    return {
        "name": f"{first} {last}", "last": last, "city": city, "city2": city2, "year": str(year),
        "year2": str(year + r.randint(26, 38)),
        "subject": r.choice(["chemistry", "architecture", "music", "economics", "marine biology", "history",
                             "mathematics", "law", "painting", "engineering"]),
        "univ": r.choice(["Linwood College", "Harbor State University", "the Kestrel Institute", "Westbrook University",
                          "the Northern Polytechnic", "Ashford College", "Greyfield University",
                          "the Meridian Institute of Technology"]),
        "job": r.choice(["engineer", "nurse", "designer", "translator", "accountant", "photographer",
                         "lab technician", "teacher", "journalist", "pilot"]),
        "company": r.choice(["Brightwater Ltd", "Corvus Media", "Halden Steel", "Pinecrest Labs", "Tidewave Shipping",
                             "Aurum Textiles", "Sable & Finch", "Lumen Optics"]),
        "n": r.choice(NUMBER_WORDS),
        "shop": r.choice(["bakery", "bookshop", "flower shop", "bicycle repair shop", "cafe", "music school",
                          "toy shop", "gallery"]),
        "shopname": r.choice(["The Golden Crust", "Paper Lantern", "Blue Heron", "Second Gear", "Little Owl",
                              "Moonrise", "Copper Kettle", "Green Door"]),
    }


def _company_slots(r: random.Random) -> dict[str, str]:
    city, city2 = r.sample(SMALL_CITIES, 2)
    year = r.randint(1950, 2005)
    return {
        "company": r.choice(["Veltrix", "Nimbus Works", "Quarry Digital", "Solace Health", "Brindle Robotics",
                             "Kestrel Foods", "Arbor Analytics", "Fennel Games", "Zephyr Mobility", "Larkspur Bio"]),
        "industry": r.choice(["software", "food", "robotics", "clothing", "medical device", "video game",
                              "solar energy", "furniture", "logistics", "toy"]),
        "founder": f"{r.choice(FIRST_NAMES)} {r.choice(LAST_NAMES)}", "year": str(year),
        "year2": str(year + r.randint(3, 15)), "city": city, "city2": city2,
        "employees": r.choice(["1,200", "350", "4,800", "90", "12,000", "2,600", "640", "7,300"]),
        "product": r.choice(["Falcon X2", "Breeze", "Atlas Pro", "Pocket Chef", "Helix", "Nova 5", "Quill", "Tern"]),
    }


def _town_slots(r: random.Random) -> dict[str, str]:
    return {
        "town": r.choice(["Oakhollow", "Brinmere", "Castelvane", "Dunmarrow", "Ellerby", "Fennick", "Greywater",
                          "Hallowford", "Istrel", "Juniper Falls", "Kelmouth", "Lindenbrook"]),
        "river": r.choice(["Arlen", "Wend", "Torva", "Sella", "Marrow", "Lys", "Ostra", "Calder"]) + " River",
        "km": str(r.choice([8, 12, 25, 30, 40, 65, 90])), "city": r.choice(SMALL_CITIES),
        "pop": r.choice(["4,300", "12,800", "2,150", "9,600", "23,000", "780", "15,400"]),
        "famous": r.choice(["cheese market", "glass workshops", "wooden bridge", "apple orchards", "stone lighthouse",
                            "violin makers", "flower gardens", "clock tower"]),
        "festival": r.choice(["Lantern Festival", "Harvest Fair", "River Week", "Jazz Days", "Kite Festival",
                              "Bread Festival"]),
        "month": r.choice(TICKET_SLOTS["month"]),
        "building": r.choice(["St. Anne's Chapel", "the old mill", "the Weavers' Hall", "Rook Tower",
                              "the customs house", "the bell tower"]),
        "year": str(r.randint(1190, 1720)),
    }


SPECIES = {"beetle": "Carabus", "frog": "Hyla", "moss": "Bryum", "spider": "Araneus", "snail": "Helix",
           "orchid": "Dendrobium", "lizard": "Anolis", "fern": "Asplenium"}


def _expedition_slots(r: random.Random) -> dict[str, str]:
    creature = r.choice(list(SPECIES))
    return {
        "leader": f"{r.choice(FIRST_NAMES)} {r.choice(LAST_NAMES)}",
        "place": r.choice(["the Atacama Desert", "northern Greenland", "the Borneo rainforest", "Lake Baikal",
                           "the Gobi Desert", "the Galápagos Islands", "the high Andes", "Svalbard"]),
        "topic": r.choice(["glacier melting", "desert beetles", "cave fungi", "migrating birds", "freshwater sponges",
                           "coral bleaching", "night-flying moths", "soil bacteria"]),
        "weeks": r.choice(NUMBER_WORDS[1:]), "year": str(r.randint(1975, 2022)),
        "org": r.choice(["the Halvorsen Foundation", "the National Science Council", "the Marlow Trust",
                         "the Geographic Society", "the Ostrander Fund"]),
        "count": r.choice(["2,000", "450", "3,700", "900", "12,000", "1,350"]),
        "creature": creature,
        "species": f"{SPECIES[creature]} " + r.choice(["glacialis", "nocturna", "brevis", "aurea", "silvestris",
                                                       "minima", "ferox", "luminosa"]),
    }


def _match_slots(r: random.Random) -> dict[str, str]:
    team1, team2, team3 = r.sample(["Riverside Rovers", "Harbor City Hawks", "Northgate Giants", "Eastfield Comets",
                                    "Westbury Wolves", "Hillcrest Rangers", "Southport Sharks", "Lakeview Lions"], 3)
    s1 = r.randint(2, 5)
    return {
        "team1": team1, "team2": team2, "team3": team3, "score": f"{s1}-{r.randint(0, s1 - 1)}",
        "day": r.choice(TICKET_SLOTS["day"][:6]),
        "stadium": r.choice(["Kingsway Park", "Meadow Stadium", "Victoria Arena", "Bayside Field", "Crown Park",
                             "Elm Road Ground"]),
        "player": f"{r.choice(FIRST_NAMES)} {r.choice(LAST_NAMES)}",
        "goals": r.choice(["two", "three"] if s1 >= 3 else ["two"]),
        "minute": f"{_ordinal(r.randint(51, 89))} minute",
        "crowd": r.choice(["18,400", "9,250", "31,000", "12,700", "24,600", "6,800"]),
    }


QA_TYPES: list[dict] = [
    {
        "slots": _bio_slots,
        "contexts": [
            "{name} was born in {city} in {year}. {last} studied {subject} at {univ} and then worked as a {job} at "
            "{company} for {n} years. In {year2}, {last} moved to {city2} and opened a {shop} called {shopname}.",
            "Born in {year} in the city of {city}, {name} trained in {subject} at {univ}. After {n} years as a {job} "
            "with {company}, {last} settled in {city2} in {year2}, where {last} now runs a {shop} named {shopname}.",
        ],
        "questions": {
            "city": ["Where was {name} born?", "In which city was {name} born?", "What is {name}'s birthplace?"],
            "year": ["When was {name} born?", "In what year was {name} born?", "What is {name}'s year of birth?"],
            "subject": ["What did {name} study?", "Which subject did {name} study?",
                        "What field was {name} trained in?"],
            "univ": ["Where did {name} study?", "Which school did {name} attend?",
                     "At which institution did {name} study {subject}?"],
            "job": ["What did {name} work as?", "What was {name}'s job at {company}?",
                    "What position did {name} hold at {company}?"],
            "company": ["Which company did {name} work for?", "Who employed {name} as a {job}?",
                        "For which employer did {name} work as a {job}?"],
            "n": ["How many years did {name} work at {company}?", "For how many years was {name} a {job}?",
                  "How long did {name} work for {company}, in years?"],
            "city2": ["Where did {name} move in {year2}?", "In which city did {name} settle?",
                      "Where does {name} run a {shop}?"],
            "year2": ["When did {name} move to {city2}?", "In what year did {name} settle in {city2}?",
                      "What year did {name} arrive in {city2}?"],
            "shopname": ["What is the name of {name}'s {shop}?", "What is {name}'s {shop} called?",
                         "What name does the {shop} in {city2} have?"],
            "shop": ["What kind of business did {name} open in {city2}?", "What does {name} run in {city2}?",
                     "What type of shop did {name} open?"],
        },
    },
    {
        "slots": _company_slots,
        "contexts": [
            "{company} is a {industry} company founded in {year} by {founder}. Its headquarters are in {city}, and it "
            "employs about {employees} people. The company's best-known product is the {product}, which was launched "
            "in {year2}. Last year, {company} opened a new office in {city2}.",
            "Founded by {founder} in {year}, the {industry} firm {company} is based in {city}. About {employees} "
            "people work there today. Its most famous product, the {product}, first went on sale in {year2}, and the "
            "firm recently added an office in {city2}.",
        ],
        "questions": {
            "founder": ["Who founded {company}?", "Who started {company}?", "Which person founded {company}?"],
            "year": ["When was {company} founded?", "In what year was {company} founded?",
                     "What year did {founder} start {company}?"],
            "city": ["Where is {company} based?", "In which city are {company}'s headquarters?",
                     "Where are the headquarters of {company}?"],
            "employees": ["How many people does {company} employ?", "About how many employees does {company} have?",
                          "How many people work at {company}?"],
            "product": ["What is {company}'s best-known product?", "Which product is {company} most famous for?",
                        "Name {company}'s most famous product."],
            "year2": ["When was the {product} launched?", "In what year did the {product} go on sale?",
                      "What year did the {product} first come out?"],
            "city2": ["Where did {company} open a new office?", "In which city does {company} have its newest office?",
                      "Where is {company}'s new office?"],
            "industry": ["What kind of company is {company}?", "In which industry does {company} work?",
                         "What industry is {company} in?"],
        },
    },
    {
        "slots": _town_slots,
        "contexts": [
            "{town} is a small town on the {river}, about {km} kilometers from {city}. It has a population of {pop}. "
            "The town is famous for its {famous}, and every {month} it hosts the {festival}. The oldest building in "
            "{town} is {building}, which was built in {year}.",
            "About {km} kilometers from {city}, the town of {town} sits on the banks of the {river} and is home to "
            "{pop} people. Visitors come for its {famous} and for the {festival}, held each {month}. The oldest "
            "building in town is {building}, dating from {year}.",
        ],
        "questions": {
            "river": ["Which river is {town} on?", "What river flows through {town}?",
                      "On the banks of which river is {town}?"],
            "km": ["How far is {town} from {city}?", "What is the distance from {town} to {city}?",
                   "How many kilometers separate {town} and {city}?"],
            "pop": ["What is the population of {town}?", "How many people live in {town}?",
                    "How many residents does {town} have?"],
            "famous": ["What is {town} famous for?", "What is {town} known for?", "What is {town} best known for?"],
            "festival": ["What festival does {town} host?", "Which festival takes place in {town}?",
                         "What event is held in {town} every {month}?"],
            "month": ["When is the {festival} held?", "In which month does {town} host the {festival}?",
                      "During what month is the {festival}?"],
            "building": ["What is the oldest building in {town}?", "Which building in {town} is the oldest?",
                         "Name the oldest building in {town}."],
            "year": ["When was {building} built?", "In what year was {building} built?",
                     "From what year does {building} date?"],
        },
    },
    {
        "slots": _expedition_slots,
        "contexts": [
            "In {year}, a team led by {leader} traveled to {place} to study {topic}. The expedition lasted {weeks} "
            "weeks and was funded by {org}. The researchers collected more than {count} samples and found a new "
            "species of {creature}, which they named {species}.",
            "{leader} led a {weeks}-week expedition to {place} in {year}, paid for by {org}, to study {topic}. By the "
            "end, the team had gathered over {count} samples. Among them was a {creature} never described before; "
            "the researchers called it {species}.",
        ],
        "questions": {
            "leader": ["Who led the expedition?", "Who was in charge of the team that went to {place}?",
                       "Which scientist led the trip to {place}?"],
            "place": ["Where did the team travel?", "Where did the expedition go?",
                      "To which place did {leader}'s team travel?"],
            "topic": ["What did the team go to study?", "What was the expedition studying?",
                      "What were the researchers studying?"],
            "year": ["When did the expedition take place?", "In what year did the team travel to {place}?",
                     "What year was the expedition?"],
            "weeks": ["How many weeks did the expedition last?", "How long was the expedition, in weeks?",
                      "For how many weeks was the team away?"],
            "org": ["Who funded the expedition?", "Which organization paid for the expedition?",
                    "Who paid for the trip to {place}?"],
            "count": ["How many samples did the researchers collect?", "How many samples were gathered?",
                      "What number of samples did the team bring back?"],
            "species": ["What did the researchers name the new species?", "What is the name of the new species?",
                        "What name was given to the new {creature}?"],
            "creature": ["What kind of new species did the team find?", "What type of organism was the new species?",
                         "The new species is what kind of living thing?"],
        },
    },
    {
        "slots": _match_slots,
        "contexts": [
            "The {team1} beat the {team2} {score} on {day} at {stadium}. {player} scored {goals} goals for the "
            "{team1}, including the winner in the {minute}. The crowd of {crowd} was the largest of the season. Next "
            "week the {team1} play the {team3}.",
            "On {day}, {crowd} fans at {stadium} watched the {team1} defeat the {team2} {score}. {player} was the "
            "star with {goals} goals, the last of them in the {minute}. The {team1} face the {team3} next.",
        ],
        "questions": {
            "team2": ["Who did the {team1} beat?", "Which team lost to the {team1}?",
                      "Who were the {team1}'s opponents on {day}?"],
            "score": ["What was the final score?", "By what score did the {team1} win?",
                      "What was the result of the game?"],
            "stadium": ["Where was the game played?", "At which stadium did the match take place?",
                        "What was the venue of the game?"],
            "player": ["Who scored {goals} goals?", "Which player scored for the {team1}?",
                       "Who was the star of the game?"],
            "minute": ["When was the winning goal scored?", "In which minute did the winning goal come?",
                       "At what minute was the last goal scored?"],
            "crowd": ["How many people watched the game?", "How big was the crowd?", "What was the attendance?"],
            "team3": ["Who will the {team1} play next?", "Which team do the {team1} face next?",
                      "Who is the {team1}'s next opponent?"],
            "day": ["On which day was the game played?", "When did the {team1} beat the {team2}?",
                    "What day was the match?"],
            "goals": ["How many goals did {player} score?", "How many times did {player} score?",
                      "What was {player}'s goal tally?"],
        },
    },
]


def _occurrences(needle: str, haystack: str) -> int:
    return len(re.findall(rf"(?<!\w){re.escape(needle)}(?!\w)", haystack))


def _qa_row(r: random.Random, phrasings: list[int]) -> dict | None:
    kind = r.choice(QA_TYPES)
    slots = kind["slots"](r)
    context = r.choice(kind["contexts"]).format(**slots)
    key = r.choice(list(kind["questions"]))
    question = kind["questions"][key][r.choice(phrasings)].format(**slots)
    answer = slots[key]
    # A span that occurs twice, or whose words leak into the question, would make the item ambiguous.
    if _occurrences(answer, context) != 1 or _occurrences(answer, question) or answer in question:
        return None
    return {"context": context, "question": question, "answer": answer}


def build_qa(rng: random.Random) -> None:
    seen: set = set()
    key = ("context", "question")
    # Two phrasings of each question train; the third, reworded one is kept for dev.
    train = fill_unique(lambda r: _qa_row(r, [0, 1]), 320, rng, key, seen)
    dev = fill_unique(lambda r: _qa_row(r, [2]), 80, rng, key, seen)
    write_jsonl("qa.train.jsonl", train)
    write_jsonl("qa.dev.jsonl", dev)


# ---------------------------------------------------------------------------
# Translation: English -> French, present-tense sentences built by rule plus hand-written phrases
# ---------------------------------------------------------------------------

# (english, french, person, english possessive)
EN_FR_SUBJECTS = [
    ("I", "je", "1s", "my"), ("you", "vous", "2p", "your"), ("he", "il", "3s", "his"), ("she", "elle", "3s", "her"),
    ("we", "nous", "1p", "our"), ("they", "ils", "3p", "their"), ("my brother", "mon frère", "3s", "his"),
    ("my sister", "ma sœur", "3s", "her"), ("the children", "les enfants", "3p", "their"),
    ("Paul", "Paul", "3s", "his"), ("Marie", "Marie", "3s", "her"), ("our neighbors", "nos voisins", "3p", "their"),
    ("my parents", "mes parents", "3p", "their"), ("Lucas", "Lucas", "3s", "his"),
]
FR_POSSESSIVE = {"1s": ("mon", "ma", "mes"), "2p": ("votre", "votre", "vos"), "3s": ("son", "sa", "ses"),
                 "1p": ("notre", "notre", "nos"), "3p": ("leur", "leur", "leurs")}

# english base | english 3rd singular | french 1s,2p,3s,1p,3p | object categories | determiners allowed
EN_FR_VERBS = [
    ("eat", "eats", "mange mangez mange mangeons mangent", "food", "def indef poss dem"),
    ("read", "reads", "lis lisez lit lisons lisent", "reading", "def indef poss dem"),
    ("buy", "buys", "achète achetez achète achetons achètent", "food things clothes press", "def indef dem"),
    ("see", "sees", "vois voyez voit voyons voient", "animals things places", "def indef dem"),
    ("want", "wants", "veux voulez veut voulons veulent", "food things clothes drinks", "def indef dem"),
    ("like", "likes", "aime aimez aime aimons aiment", "food animals clothes places drinks", "def poss dem"),
    ("open", "opens", "ouvre ouvrez ouvre ouvrons ouvrent", "openable", "def poss dem"),
    ("close", "closes", "ferme fermez ferme fermons ferment", "openable", "def poss dem"),
    ("clean", "cleans", "nettoie nettoyez nettoie nettoyons nettoient", "cleanable", "def poss"),
    ("write", "writes", "écris écrivez écrit écrivons écrivent", "writable", "def indef"),
    ("drink", "drinks", "bois buvez boit buvons boivent", "drinks", "def indef"),
    ("take", "takes", "prends prenez prend prenons prennent", "takeable transport", "def indef poss"),
    ("find", "finds", "trouve trouvez trouve trouvons trouvent", "takeable", "def poss"),
    ("have", "has", "ai avez a avons ont", "things animals clothes", "indef"),
    ("sell", "sells", "vends vendez vend vendons vendent", "things clothes", "def poss dem"),
    ("look for", "looks for", "cherche cherchez cherche cherchons cherchent", "takeable animals", "def poss"),
    ("visit", "visits", "visite visitez visite visitons visitent", "places", "def dem"),
]
PERSON_INDEX = {"1s": 0, "2p": 1, "3s": 2, "1p": 3, "3p": 4}

# english sg | english pl ("-": uncountable here) | french sg | french pl | gender | categories
EN_FR_NOUNS = """
apple|apples|pomme|pommes|f|food
cake|cakes|gâteau|gâteaux|m|food
orange|oranges|orange|oranges|f|food
banana|bananas|banane|bananes|f|food
sandwich|sandwiches|sandwich|sandwichs|m|food
pizza|pizzas|pizza|pizzas|f|food
salad|salads|salade|salades|f|food
egg|eggs|œuf|œufs|m|food
strawberry|strawberries|fraise|fraises|f|food
tomato|tomatoes|tomate|tomates|f|food
bread|-|pain|-|m|food
cheese|-|fromage|-|m|food
soup|-|soupe|-|f|food
rice|-|riz|-|m|food
book|books|livre|livres|m|reading things
newspaper|newspapers|journal|journaux|m|reading press
letter|letters|lettre|lettres|f|reading writable openable
magazine|magazines|magazine|magazines|m|reading press
map|maps|carte|cartes|f|reading takeable
story|stories|histoire|histoires|f|reading writable
recipe|recipes|recette|recettes|f|reading writable
list|lists|liste|listes|f|writable
message|messages|message|messages|m|writable
poem|poems|poème|poèmes|m|writable
song|songs|chanson|chansons|f|writable
key|keys|clé|clés|f|things takeable
bag|bags|sac|sacs|m|things takeable openable
phone|phones|téléphone|téléphones|m|things takeable
wallet|wallets|portefeuille|portefeuilles|m|things takeable
umbrella|umbrellas|parapluie|parapluies|m|things takeable
computer|computers|ordinateur|ordinateurs|m|things
box|boxes|boîte|boîtes|f|things openable
bicycle|bicycles|vélo|vélos|m|things cleanable
car|cars|voiture|voitures|f|things cleanable
house|houses|maison|maisons|f|things cleanable
chair|chairs|chaise|chaises|f|things
lamp|lamps|lampe|lampes|f|things
ticket|tickets|billet|billets|m|takeable
watch|watches|montre|montres|f|things takeable
pen|pens|stylo|stylos|m|things takeable
ball|balls|ballon|ballons|m|things takeable
bottle|bottles|bouteille|bouteilles|f|things openable
table|tables|table|tables|f|things cleanable
shirt|shirts|chemise|chemises|f|clothes
coat|coats|manteau|manteaux|m|clothes
hat|hats|chapeau|chapeaux|m|clothes
dress|dresses|robe|robes|f|clothes
jacket|jackets|veste|vestes|f|clothes
scarf|scarves|écharpe|écharpes|f|clothes
dog|dogs|chien|chiens|m|animals
cat|cats|chat|chats|m|animals
bird|birds|oiseau|oiseaux|m|animals
horse|horses|cheval|chevaux|m|animals
cow|cows|vache|vaches|f|animals
rabbit|rabbits|lapin|lapins|m|animals
museum|museums|musée|musées|m|places
castle|castles|château|châteaux|m|places
market|markets|marché|marchés|m|places
church|churches|église|églises|f|places
garden|gardens|jardin|jardins|m|places
park|parks|parc|parcs|m|places
city|cities|ville|villes|f|places
bridge|bridges|pont|ponts|m|places
door|doors|porte|portes|f|openable
window|windows|fenêtre|fenêtres|f|openable cleanable
shop|shops|magasin|magasins|m|openable
kitchen|-|cuisine|-|f|cleanable
bedroom|bedrooms|chambre|chambres|f|cleanable
floor|-|sol|-|m|cleanable
coffee|coffees|café|cafés|m|drinks
tea|-|thé|-|m|drinks
cup of tea|cups of tea|tasse de thé|tasses de thé|f|drinks
glass of milk|glasses of milk|verre de lait|verres de lait|m|drinks
orange juice|-|jus d'orange|-|m|drinks
water|-|eau|-|f|drinks
lemonade|-|limonade|-|f|drinks
hot chocolate|hot chocolates|chocolat chaud|chocolats chauds|m|drinks
bus|-|bus|-|m|transport
train|-|train|-|m|transport
taxi|-|taxi|-|m|transport
plane|-|avion|-|m|transport
"""

# english | fr m, f, m pl, f pl | before/after the noun | masculine form before a vowel | categories
EN_FR_ADJECTIVES = [
    ("red", "rouge rouge rouges rouges", "after", None, "things clothes"),
    ("black", "noir noire noirs noires", "after", None, "things clothes animals"),
    ("white", "blanc blanche blancs blanches", "after", None, "things clothes animals"),
    ("green", "vert verte verts vertes", "after", None, "things clothes"),
    ("blue", "bleu bleue bleus bleues", "after", None, "things clothes"),
    ("heavy", "lourd lourde lourds lourdes", "after", None, "things"),
    ("expensive", "cher chère chers chères", "after", None, "things clothes"),
    ("small", "petit petite petits petites", "before", None, "things clothes animals places"),
    ("big", "grand grande grands grandes", "before", None, "things animals places"),
    ("old", "vieux vieille vieux vieilles", "before", "vieil", "things clothes animals places"),
    ("new", "nouveau nouvelle nouveaux nouvelles", "before", "nouvel", "things clothes"),
    ("beautiful", "beau belle beaux belles", "before", "bel", "things clothes animals places"),
]

EN_FR_TIMES = [("every day", "tous les jours"), ("every morning", "tous les matins"), ("today", "aujourd'hui"),
               ("on Sundays", "le dimanche"), ("in the evening", "le soir"), ("every week", "chaque semaine"),
               ("on Saturdays", "le samedi"), ("in the morning", "le matin"), ("at noon", "à midi")]

# english base | english 3rd singular | french forms | (english place, french place), ...
EN_FR_MOTION = [
    ("go", "goes", "vais allez va allons vont", [
        ("to the market", "au marché"), ("to the beach", "à la plage"), ("to school", "à l'école"),
        ("to the station", "à la gare"), ("to the park", "au parc"), ("to the cinema", "au cinéma"),
        ("to the library", "à la bibliothèque"), ("to the museum", "au musée"), ("to work", "au travail"),
        ("to the bakery", "à la boulangerie"), ("to the airport", "à l'aéroport"), ("to Paris", "à Paris"),
        ("to London", "à Londres"), ("to Spain", "en Espagne"), ("to Italy", "en Italie"),
        ("to Canada", "au Canada"), ("to the doctor", "chez le médecin")]),
    ("live", "lives", "habite habitez habite habitons habitent", [
        ("in Paris", "à Paris"), ("in Lyon", "à Lyon"), ("in London", "à Londres"), ("in Berlin", "à Berlin"),
        ("in Montreal", "à Montréal"), ("in a small village", "dans un petit village"), ("in France", "en France"),
        ("in Canada", "au Canada"), ("in Japan", "au Japon"), ("in Italy", "en Italie"),
        ("in a big house", "dans une grande maison"), ("near the station", "près de la gare"),
        ("by the sea", "au bord de la mer")]),
    ("work", "works", "travaille travaillez travaille travaillons travaillent", [
        ("at the hospital", "à l'hôpital"), ("at the bank", "à la banque"), ("in an office", "dans un bureau"),
        ("at the market", "au marché"), ("in a school", "dans une école"), ("in a restaurant", "dans un restaurant"),
        ("at home", "à la maison"), ("in a shop", "dans un magasin"), ("at the post office", "à la poste"),
        ("on a farm", "dans une ferme"), ("in a factory", "dans une usine"), ("at night", "la nuit")]),
]

EN_FR_PHRASES = [
    ("Good morning.", "Bonjour."), ("Good evening.", "Bonsoir."), ("Thank you very much.", "Merci beaucoup."),
    ("See you tomorrow.", "À demain."), ("Where is the station?", "Où est la gare ?"),
    ("How much does this cost?", "Combien ça coûte ?"), ("I am hungry.", "J'ai faim."),
    ("She is thirsty.", "Elle a soif."), ("It is raining.", "Il pleut."),
    ("It is cold today.", "Il fait froid aujourd'hui."), ("The weather is nice.", "Il fait beau."),
    ("What time is it?", "Quelle heure est-il ?"), ("My name is Anna.", "Je m'appelle Anna."),
    ("How are you?", "Comment allez-vous ?"), ("I am fine, thank you.", "Je vais bien, merci."),
    ("Can you help me?", "Pouvez-vous m'aider ?"), ("I do not understand.", "Je ne comprends pas."),
    ("Please speak more slowly.", "Parlez plus lentement, s'il vous plaît."),
    ("Where are the toilets?", "Où sont les toilettes ?"), ("The bill, please.", "L'addition, s'il vous plaît."),
    ("I would like a coffee.", "Je voudrais un café."), ("The shop opens at nine.", "Le magasin ouvre à neuf heures."),
    ("The train leaves at noon.", "Le train part à midi."), ("I am looking for the hotel.", "Je cherche l'hôtel."),
    ("Turn left at the bridge.", "Tournez à gauche au pont."),
    ("The museum is closed on Mondays.", "Le musée est fermé le lundi."),
    ("My brother is a doctor.", "Mon frère est médecin."), ("Her mother is a teacher.", "Sa mère est enseignante."),
    ("We have two children.", "Nous avons deux enfants."), ("They live near the sea.", "Ils habitent près de la mer."),
    ("The cat is sleeping on the bed.", "Le chat dort sur le lit."),
    ("The book is on the table.", "Le livre est sur la table."),
    ("The keys are in the bag.", "Les clés sont dans le sac."),
    ("The children are playing in the garden.", "Les enfants jouent dans le jardin."),
    ("It is too expensive.", "C'est trop cher."), ("This soup is very good.", "Cette soupe est très bonne."),
    ("I need a doctor.", "J'ai besoin d'un médecin."), ("Call the police!", "Appelez la police !"),
    ("The water is cold.", "L'eau est froide."), ("Do you speak English?", "Parlez-vous anglais ?"),
    ("I speak a little French.", "Je parle un peu français."), ("Happy birthday!", "Joyeux anniversaire !"),
    ("Have a good trip!", "Bon voyage !"), ("The door is open.", "La porte est ouverte."),
    ("The windows are closed.", "Les fenêtres sont fermées."), ("I lost my wallet.", "J'ai perdu mon portefeuille."),
    ("We visited the castle yesterday.", "Nous avons visité le château hier."),
    ("She bought a new dress.", "Elle a acheté une nouvelle robe."),
    ("He finished his work.", "Il a fini son travail."),
    ("They watched a film last night.", "Ils ont regardé un film hier soir."),
    ("The meeting starts at ten.", "La réunion commence à dix heures."),
    ("My phone does not work.", "Mon téléphone ne marche pas."), ("The bus is late.", "Le bus est en retard."),
    ("I like to read in the evening.", "J'aime lire le soir."),
    ("We are going to the beach on Saturday.", "Nous allons à la plage samedi."),
    ("The restaurant is full.", "Le restaurant est complet."),
    ("Is there a pharmacy near here?", "Y a-t-il une pharmacie près d'ici ?"),
    ("The sky is blue.", "Le ciel est bleu."),
    ("The flowers are beautiful.", "Les fleurs sont belles."), ("I have a headache.", "J'ai mal à la tête."),
    ("Open the window, please.", "Ouvrez la fenêtre, s'il vous plaît."), ("Close the door.", "Fermez la porte."),
    ("Wait here.", "Attendez ici."), ("The meal is ready.", "Le repas est prêt."),
    ("The car is in the garage.", "La voiture est dans le garage."), ("Winter is coming.", "L'hiver arrive."),
    ("The store is closed today.", "Le magasin est fermé aujourd'hui."),
    ("We need more time.", "Nous avons besoin de plus de temps."), ("I agree with you.", "Je suis d'accord avec vous."),
    ("That is a good idea.", "C'est une bonne idée."), ("The film was very long.", "Le film était très long."),
    ("Where do you live?", "Où habitez-vous ?"), ("What are you doing?", "Que faites-vous ?"),
    ("The baby is sleeping.", "Le bébé dort."), ("There are three apples on the table.",
                                                  "Il y a trois pommes sur la table."),
    ("I drink tea every morning.", "Je bois du thé tous les matins."),
    ("The garden is full of flowers.", "Le jardin est plein de fleurs."),
    ("Our house is small but comfortable.", "Notre maison est petite mais confortable."),
    ("The river is very wide here.", "La rivière est très large ici."),
    ("My sister is taller than me.", "Ma sœur est plus grande que moi."),
    ("The library opens at eight.", "La bibliothèque ouvre à huit heures."),
]

H_MUET = {"hôpital", "hôtel", "histoire", "histoires", "homme", "heure", "hiver", "habite", "habitez", "habitons",
          "habitent"}
NUMBERS_EN_FR = [("two", "deux"), ("three", "trois"), ("four", "quatre")]


def _fr_vowel(word: str) -> bool:
    return word[0].lower() in "aeiouéèêàâîôœy" or word.lower() in H_MUET


def _en_article(next_word: str) -> str:
    return "an" if next_word[0].lower() in "aeiou" else "a"


def _noun_table() -> list[dict]:
    nouns = []
    for line in EN_FR_NOUNS.strip().splitlines():
        en, en_pl, fr, fr_pl, gender, cats = line.split("|")
        nouns.append({"en": en, "en_pl": None if en_pl == "-" else en_pl, "fr": fr,
                      "fr_pl": None if fr_pl == "-" else fr_pl, "gender": gender, "cats": set(cats.split())})
    return nouns


def _object_phrase(r: random.Random, noun: dict, det: str, person: str, en_poss: str, negated: bool,
                   ) -> tuple[str, str]:
    """The object noun phrase in English and French, agreeing in gender, number and elision."""
    plural = noun["en_pl"] is not None and r.random() < 0.3
    number = ""
    if det == "indef" and plural:
        if negated:
            plural = False
        else:
            number, fr_number = r.choice(NUMBERS_EN_FR)
    en_noun = noun["en_pl"] if plural else noun["en"]
    fr_noun = noun["fr_pl"] if plural else noun["fr"]
    fem = noun["gender"] == "f"

    adjective = None
    if " " not in noun["fr"] and r.random() < 0.35:
        options = [a for a in EN_FR_ADJECTIVES if set(a[4].split()) & noun["cats"]]
        adjective = r.choice(options) if options else None
    en_words = [en_noun]
    fr_before: list[str] = []
    fr_after: list[str] = []
    if adjective:
        en_adj, forms, position, m_vowel, _ = adjective
        m, f, mpl, fpl = forms.split()
        form = (fpl if fem else mpl) if plural else (f if fem else m)
        if position == "before" and not plural and not fem and m_vowel and _fr_vowel(fr_noun):
            form = m_vowel
        en_words.insert(0, en_adj)
        (fr_before if position == "before" else fr_after).append(form)
    fr_next = (fr_before or [fr_noun])[0]

    if det == "def":
        en_det = "the"
        fr_det = "les" if plural else ("l'" if _fr_vowel(fr_next) else ("la" if fem else "le"))
    elif det == "indef":
        if plural:
            en_det, fr_det = number, fr_number
        else:
            en_det = _en_article(en_words[0])
            if negated:
                fr_det = "d'" if _fr_vowel(fr_next) else "de"
            else:
                fr_det = "une" if fem else "un"
    elif det == "poss":
        en_det = en_poss
        m_form, f_form, pl_form = FR_POSSESSIVE[person]
        fr_det = pl_form if plural else (f_form if fem and not _fr_vowel(fr_next) else m_form)
    elif det == "dem":
        en_det = "these" if plural else "this"
        fr_det = "ces" if plural else ("cette" if fem else ("cet" if _fr_vowel(fr_next) else "ce"))
    else:
        raise ValueError(det)
    fr = " ".join([fr_det, *fr_before, fr_noun, *fr_after]).replace("' ", "'")
    return " ".join([en_det, *en_words]), fr


def _capitalize(text: str) -> str:
    return text[0].upper() + text[1:]


def _fr_clause(subject: str, verb: str, negated: bool) -> str:
    if negated:
        ne = "n'" if _fr_vowel(verb) else "ne"
        clause = f"{subject} {ne} {verb} pas".replace("' ", "'")
    else:
        clause = f"{subject} {verb}"
    if subject == "je" and _fr_vowel(clause.split()[1]):
        clause = "j'" + clause[3:]
    return clause


def _en_clause(subject: str, person: str, base: str, third: str, negated: bool, r: random.Random) -> str:
    if negated:
        aux = ("does" if person == "3s" else "do") + (" not" if r.random() < 0.6 else "n't")
        return f"{subject} {aux} {base}"
    return f"{subject} {third if person == '3s' else base}"


def _translation_row(r: random.Random, nouns: list[dict]) -> dict:
    subject_en, subject_fr, person, en_poss = r.choice(EN_FR_SUBJECTS)
    negated = r.random() < 0.2
    if r.random() < 0.25:
        base, third, forms, places = r.choice(EN_FR_MOTION)
        verb_fr = forms.split()[PERSON_INDEX[person]]
        place_en, place_fr = r.choice(places)
        english = f"{_en_clause(subject_en, person, base, third, negated, r)} {place_en}"
        french = f"{_fr_clause(subject_fr, verb_fr, negated)} {place_fr}"
    else:
        base, third, forms, cats, dets = r.choice(EN_FR_VERBS)
        verb_fr = forms.split()[PERSON_INDEX[person]]
        noun = r.choice([n for n in nouns if n["cats"] & set(cats.split())])
        allowed = dets.split()
        if "transport" in noun["cats"]:
            allowed = ["def"]  # "takes the bus": no other determiner reads naturally
        elif noun["en_pl"] is None:
            allowed = [d for d in allowed if d != "indef"] or ["def"]  # no "a bread"
        det = r.choice(allowed)
        object_en, object_fr = _object_phrase(r, noun, det, person, en_poss, negated)
        english = f"{_en_clause(subject_en, person, base, third, negated, r)} {object_en}"
        french = f"{_fr_clause(subject_fr, verb_fr, negated)} {object_fr}"
    if r.random() < 0.35 and base not in ("live", "have"):  # "lives in Paris every morning" reads wrong
        time_en, time_fr = r.choice(EN_FR_TIMES)
        english, french = f"{english} {time_en}", f"{french} {time_fr}"
    return {"english": _capitalize(english) + ".", "french": _capitalize(french) + "."}


def build_translate(rng: random.Random) -> None:
    nouns = _noun_table()
    phrases = [{"english": en, "french": fr} for en, fr in EN_FR_PHRASES]
    train_phrases, dev_phrases = held_out(phrases, every=3, offset=2)
    seen = {(p["english"],) for p in phrases}
    train = train_phrases + fill_unique(lambda r: _translation_row(r, nouns), 300, rng, "english", seen)
    dev = dev_phrases + fill_unique(lambda r: _translation_row(r, nouns), 40, rng, "english", seen)
    rng.shuffle(train)
    rng.shuffle(dev)
    write_jsonl("translate.train.jsonl", train)
    write_jsonl("translate.dev.jsonl", dev)


# ---------------------------------------------------------------------------
# Summarization: a short news item (3-5 sentences) -> one sentence
# ---------------------------------------------------------------------------

TOWNS = ["Millbrook", "Ashton", "Cedar Falls", "Kingsford", "Barrow Hill", "Elmstead", "Northam", "Redwater",
         "Stonebridge", "Willowdale", "Harwick", "Fairport"]
PEOPLE = [f"{f} {la}" for f, la in zip(FIRST_NAMES, LAST_NAMES, strict=True)]

STORE_KINDS = {"Baxter's Books": "book", "The Corner Toy Shop": "toy", "Fenwick Music": "music",
               "Hollis Hardware": "hardware"}

# Each story: slot values, its sentences ("!" marks one the summary depends on; the others may be dropped),
# and the one-sentence summary.
STORIES: list[dict] = [
    {
        "slots": {"town": TOWNS, "day": TICKET_SLOTS["day"][:5], "votes": ["7 to 2", "5 to 4", "8 to 1", "6 to 3"],
                  "project": ["a new bike lane on Main Street", "a public swimming pool", "an extension to the library",
                              "a bus route to the airport", "a solar farm next to the old quarry",
                              "a skate park near the river"],
                  "month": TICKET_SLOTS["month"], "cost": ["$2 million", "$450,000", "$8 million", "$1.2 million"],
                  "concern": ["the noise", "the cost", "the loss of parking spaces", "the extra traffic"]},
        "sentences": ["!The city council of {town} met on {day} evening.",
                      "!Members voted {votes} to approve {project}.",
                      "!Work will start in {month} and is expected to cost about {cost}.",
                      "Some residents had opposed the plan because of {concern}."],
        "summary": "{town}'s city council approved {project}, with work starting in {month}.",
    },
    {
        "slots": {"company": ["Veltrix", "Nimbus Works", "Brindle Robotics", "Zephyr Mobility", "Lumen Optics"],
                  "product": ["the Pulse 3", "the Aria", "the Orbit X", "the Pebble Pro", "the Kite"],
                  "kind": ["smartwatch", "tablet", "pair of earbuds", "e-reader", "fitness tracker"],
                  "audience": ["runners", "students", "older adults", "travelers", "young children"],
                  "date": ["March 3", "June 12", "September 20", "November 8"],
                  "price": ["$129", "$249", "$89", "$399"], "hours": ["20", "36", "48", "60"],
                  "praise": ["bright screen", "light weight", "simple design"],
                  "critic": ["high price", "short warranty", "slow charging"]},
        "sentences": ["!{company} has launched {product}, a {kind} aimed at {audience}.",
                      "!It goes on sale on {date} for {price}.",
                      "{company} says the battery lasts {hours} hours, twice as long as its previous model.",
                      "Early reviewers praised its {praise} but criticized its {critic}."],
        "summary": "{company} launched {product}, a {kind} for {audience}, on sale from {date} for {price}.",
    },
    {
        "slots": {"team1": ["Riverside Rovers", "Northgate Giants", "Eastfield Comets", "Westbury Wolves"],
                  "team2": ["Harbor City Hawks", "Hillcrest Rangers", "Southport Sharks", "Lakeview Lions"],
                  "competition": ["regional cup", "league", "national cup", "county championship"],
                  "day": TICKET_SLOTS["day"][:6], "score": ["2-1", "3-2", "1-0", "4-2"],
                  "player": PEOPLE, "year": ["1987", "1995", "2004", "2011"], "town": TOWNS},
        "sentences": ["!The {team1} won the {competition} final on {day}, beating the {team2} {score}.",
                      "{player} scored the deciding goal late in the second half.",
                      "!It is the club's first title since {year}.",
                      "Thousands of fans celebrated in the streets of {town} until the early morning."],
        "summary": "The {team1} beat the {team2} {score} to win the {competition}, their first title since {year}.",
    },
    {
        "slots": {"region": ["the river valley", "the eastern counties", "the lake district", "the northern hills",
                             "the capital region"],
                  "day": TICKET_SLOTS["day"][:5], "speed": ["110", "130", "95", "150"],
                  "homes": ["20,000", "8,500", "45,000", "3,200"],
                  "day2": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]},
        "sentences": ["!A strong storm hit {region} on {day} night.",
                      "!Winds of up to {speed} kilometers per hour knocked down trees and power lines, leaving about "
                      "{homes} homes without electricity.",
                      "!Schools in the area will stay closed on {day2}.",
                      "Forecasters expect calmer weather by the weekend."],
        "summary": "A storm with winds of up to {speed} km/h left about {homes} homes in {region} without power and "
                   "closed schools.",
    },
    {
        "slots": {"school": ["Oakwood Primary School", "Hillside High School", "St. Mary's Academy",
                             "Brookfield Secondary School"],
                  "facility": ["library", "science lab", "sports hall", "music room"],
                  "day": TICKET_SLOTS["day"][:5], "cost": ["$600,000", "$1.5 million", "$300,000"],
                  "feature": ["a reading garden", "twenty new computers", "a small theater",
                              "solar panels on the roof"],
                  "person": PEOPLE},
        "sentences": ["!{school} opened its new {facility} on {day}.",
                      "!The building cost {cost} and was paid for mostly by donations from parents and local "
                      "businesses.",
                      "It includes {feature}.",
                      "The head teacher, {person}, said students had waited ten years for it."],
        "summary": "{school} opened a new {facility}, costing {cost} and funded mostly by donations.",
    },
    {
        "slots": {"univ": ["Greyfield University", "Westbrook University", "Harbor State University",
                           "Linwood College"],
                  "finding": ["walking twenty minutes a day improves sleep", "reading aloud helps children learn new "
                              "words faster", "people remember more when they take notes by hand",
                              "short naps make drivers more alert"],
                  "n": ["400", "1,200", "2,500", "650"], "subjects": ["adults", "volunteers", "people"],
                  "years": ["two", "three", "five"], "person": PEOPLE,
                  "journal": ["Health Today", "Mind and Body", "The Science Review"], "day": TICKET_SLOTS["day"][:5]},
        "sentences": ["!Researchers at {univ} have found that {finding}.",
                      "!The team followed {n} {subjects} for {years} years.",
                      "Lead author {person} said the results surprised them.",
                      "The study was published in the journal {journal} on {day}."],
        "summary": "A {univ} study of {n} {subjects} found that {finding}.",
    },
    {
        "slots": {"store": list(STORE_KINDS),
                  "street": ["High Street", "Mill Lane", "Station Road", "Church Street"],
                  "month": TICKET_SLOTS["month"], "years": ["forty", "thirty-five", "sixty", "twenty-two"],
                  "person": PEOPLE},
        "sentences": ["!{store}, the {kind} shop on {street}, will close at the end of {month} after {years} years "
                      "in business.",
                      "!Owner {person} said rising rents and online competition made it impossible to continue.",
                      "All stock is being sold at half price.",
                      "Regular customers have left flowers and cards at the door."],
        "summary": "{store}, a {kind} shop on {street}, will close in {month} after {years} years because of rising "
                   "rents and online competition.",
    },
    {
        "slots": {"festival": ["Lantern Festival", "Harvest Fair", "Jazz Days", "Kite Festival", "Bread Festival"],
                  "town": TOWNS, "month": TICKET_SLOTS["month"][3:9],
                  "visitors": ["10,000", "25,000", "4,000", "60,000"], "days": ["three", "four", "five"],
                  "act": ["a night market", "a parade of giant puppets", "free concerts in the park",
                          "a cooking contest", "fireworks over the harbor"],
                  "day": TICKET_SLOTS["day"][:5]},
        "sentences": ["!The {festival} returns to {town} this {month} after a two-year break.",
                      "!Organizers expect more than {visitors} visitors over {days} days.",
                      "This year's program includes {act} and {act2}.",
                      "Tickets go on sale next {day}."],
        "summary": "The {festival} returns to {town} in {month} after a two-year break, expecting more than "
                   "{visitors} visitors.",
    },
    {
        "slots": {"city": ["Ashton", "Northam", "Fairport", "Kingsford", "Redwater", "Harwick"],
                  "day": TICKET_SLOTS["day"][:5],
                  "cause": ["a signal failure", "a fallen tree on the tracks", "flooding near the line",
                            "a power cut"],
                  "passengers": ["15,000", "40,000", "7,000", "22,000"],
                  "delay": ["an hour", "two hours", "90 minutes"],
                  "day2": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]},
        "sentences": ["!Train services between {city} and {city2} were suspended on {day} after {cause}.",
                      "!About {passengers} passengers were affected during the morning rush hour.",
                      "Buses replaced some trains, but journeys took up to {delay} longer.",
                      "The rail company expects normal service to resume on {day2}."],
        "summary": "Trains between {city} and {city2} were suspended on {day} after {cause}, affecting about "
                   "{passengers} passengers.",
    },
    {
        "slots": {"who": ["hiker", "climber", "fisherman", "cyclist"],
                  "where": ["a narrow ledge on Black Rock", "a flooded cave", "a cliff above the beach",
                            "a frozen lake"],
                  "day": TICKET_SLOTS["day"][:6], "hours": ["six", "nine", "twelve", "four"],
                  "tool": ["a long ladder", "ropes", "a small boat", "a helicopter"],
                  "advice": ["check the weather before going out", "tell someone where they are going",
                             "carry a charged phone"]},
        "sentences": ["!A {who} was rescued from {where} on {day} afternoon after {hours} hours.",
                      "Firefighters used {tool} to reach the {who}.",
                      "The {who} was taken to hospital with minor injuries.",
                      "Officials reminded visitors to {advice}."],
        "summary": "A {who} stuck on {where} for {hours} hours was rescued on {day}.",
    },
    {
        "slots": {"company": ["Halden Steel", "Aurum Textiles", "Kestrel Foods", "Brindle Robotics"],
                  "n": ["300", "120", "450", "80"], "town": TOWNS,
                  "amount": ["$40 million", "$15 million", "$120 million"],
                  "product": ["electric bus parts", "frozen meals", "wind turbine blades", "recycled fabric"],
                  "month": TICKET_SLOTS["month"]},
        "sentences": ["!{company} will hire {n} new workers at its factory in {town} next year.",
                      "!The expansion is part of a {amount} investment to make {product}.",
                      "Local officials welcomed the news, saying the town had lost many jobs in recent years.",
                      "Training for the new staff begins in {month}."],
        "summary": "{company} will hire {n} workers in {town} as part of a {amount} investment to make {product}.",
    },
    {
        "slots": {"zoo": ["Riverside Zoo", "the city zoo", "Greenhill Wildlife Park", "Marston Zoo"],
                  "animal": ["giraffe", "elephant", "hippo", "rhino", "camel"],  # all have calves
                  "day": TICKET_SLOTS["day"][:6], "mother": ["Nala", "Tessa", "Ruby", "Mira", "Kiki"],
                  "weight": ["50 kilograms", "90 kilograms", "35 kilograms"],
                  "month": TICKET_SLOTS["month"]},
        "sentences": ["!{zoo_cap} has welcomed a baby {animal}, born on {day} to its mother {mother}.",
                      "!The calf weighed {weight} at birth and is healthy.",
                      "!Visitors will be able to see it from {month}.",
                      "The zoo is running a contest to choose its name."],
        "summary": "{zoo_cap} announced the birth of a healthy baby {animal}, which visitors can see from {month}.",
    },
    {
        "slots": {"person": PEOPLE,
                  "institution": ["the city museum", "the national library", "the botanical garden",
                                  "the science center"],
                  "previous": ["a gallery in Ashton", "the Fairport art school", "a history museum in Northam"],
                  "years": ["eight", "twelve", "six"], "month": TICKET_SLOTS["month"]},
        "sentences": ["!{person} has been named the new director of {institution}.",
                      "{person_last} previously ran {previous} for {years} years.",
                      "!{person_last} will start in {month}, replacing {person2}, who is retiring.",
                      "Staff said they hope the change will bring more visitors."],
        "summary": "{person} will become director of {institution} in {month}, replacing the retiring {person2}.",
    },
    {
        "slots": {"city": ["Ashton", "Northam", "Fairport", "Kingsford", "Redwater", "Harwick"],
                  "p": ["$45", "$50", "$55", "$60", "$65", "$70"], "month": TICKET_SLOTS["month"]},
        "sentences": ["!The price of a monthly bus pass in {city} will rise from {p} to {p2} in {month}.",
                      "!The transport authority says higher fuel and staff costs forced the increase.",
                      "Students and people over 65 will keep their discounts.",
                      "Passenger groups called the rise unfair."],
        "summary": "{city}'s monthly bus pass will rise from {p} to {p2} in {month} because of higher fuel and staff "
                   "costs.",
    },
]


def _story_row(story: dict, r: random.Random) -> dict:
    slots = story["slots"]
    values = {name: r.choice(options) for name, options in slots.items()}
    for name, options in slots.items():  # "{city2}" is a second city, never the same as "{city}"
        values[name + "2"] = r.choice([v for v in options if v != values[name]])
    if "p" in slots:  # a price rise: the second price is higher
        prices = slots["p"]
        values["p"] = r.choice(prices[:-1])
        values["p2"] = r.choice(prices[prices.index(values["p"]) + 1:])
    if "store" in values:  # the shop's kind goes with its name
        values["kind"] = STORE_KINDS[values["store"]]
    if "zoo" in values:
        values["zoo_cap"] = _capitalize(values["zoo"])
    if "person" in values:
        values["person_last"] = values["person"].split()[-1]
    kept = [s for s in story["sentences"] if s.startswith("!") or r.random() < 0.75]
    document = " ".join(s.lstrip("!").format(**values) for s in kept)
    return {"document": document, "summary": story["summary"].format(**values)}


def build_summarize(rng: random.Random) -> None:
    # Two story kinds (the storm, the zoo) appear only in dev: a summary of a story shape never seen in train.
    dev_only = [STORIES[3], STORIES[11]]
    shared = [s for s in STORIES if s not in dev_only]
    seen: set = set()
    train = fill_unique(lambda r: _story_row(r.choice(shared), r), 240, rng, "document", seen)
    dev = (fill_unique(lambda r: _story_row(r.choice(shared), r), 24, rng, "document", seen)
           + fill_unique(lambda r: _story_row(r.choice(dev_only), r), 16, rng, "document", seen))
    rng.shuffle(dev)
    write_jsonl("summarize.train.jsonl", train)
    write_jsonl("summarize.dev.jsonl", dev)


# ---------------------------------------------------------------------------
# Paraphrasing: pairs of templates that say the same thing in other words
# ---------------------------------------------------------------------------

PARAPHRASE_PAIRS = [
    ("{person} bought a new {thing} yesterday.", "Yesterday, {person} purchased a new {thing}."),
    ("The meeting has been moved to {day}.", "The meeting will now take place on {day}."),
    ("{person} missed the party because of a cold.", "Because of a cold, {person} did not make it to the party."),
    ("The {place} closes at {time} on weekdays.", "On weekdays, the {place} shuts at {time}."),
    ("It is very hot in {city} today.", "Today the weather in {city} is extremely warm."),
    ("{person} is the fastest runner on the team.", "Nobody on the team runs faster than {person}."),
    ("The {thing} was too expensive, so {person} did not buy it.",
     "{person} decided against buying the {thing} because it cost too much."),
    ("Please turn off the lights when you leave.", "Remember to switch the lights off on your way out."),
    ("The train was delayed by {minutes} minutes.", "The train arrived {minutes} minutes late."),
    ("{person} wrote the report.", "The report was written by {person}."),
    ("The company hired {count} new employees last month.",
     "Last month, the company took on {count} new staff members."),
    ("I have never been to {city}.", "I have not visited {city} before."),
    ("{person} started learning {language} {years} years ago.",
     "{person} has been studying {language} for {years} years."),
    ("The store sold out of {things} in an hour.", "All the {things} in the store were gone within an hour."),
    ("Can you tell me where the {place} is?", "Could you show me the way to the {place}?"),
    ("{person} forgot an umbrella and got wet.", "{person} got soaked after leaving the umbrella at home."),
    ("The museum is free for children under {age}.", "Children younger than {age} can enter the museum for free."),
    ("We need to finish this project by {day}.", "This project has to be done by {day}."),
    ("The soup needs more salt.", "The soup is not salty enough."),
    ("{person} lives close to the {place}.", "{person}'s home is near the {place}."),
    ("The film was so boring that {person} fell asleep.", "The film was dull enough to put {person} to sleep."),
    ("Most of the guests arrived after {time}.", "The majority of the guests came later than {time}."),
    ("{person} apologized for being late.", "{person} said sorry for arriving late."),
    ("The road was closed because of the snow.", "Snow forced the road to close."),
    ("{person} is allergic to {food}.", "{person} cannot eat {food} because of an allergy."),
    ("The price of {things} went up last week.", "Last week, {things} became more expensive."),
    ("It took {person} {hours} hours to fix the {thing}.", "{person} spent {hours} hours repairing the {thing}."),
    ("The children were excited about the trip to {city}.", "The trip to {city} made the children very excited."),
    ("Nobody answered the phone at the {place}.", "No one at the {place} picked up the phone."),
    ("{person} rarely eats meat.", "{person} hardly ever eats meat."),
    ("The library will be closed for repairs until {day}.", "Because of repairs, the library stays shut until {day}."),
    ("{person} asked {person2} to help with the move.", "{person} asked for {person2}'s help with moving."),
    ("The new {thing} is much lighter than the old one.", "The old {thing} was a lot heavier than the new one."),
    ("Fasten your seat belt before you start the engine.",
     "Start the engine only after you have buckled your seat belt."),
    ("The weather is expected to improve tomorrow.", "Forecasters say the weather should get better tomorrow."),
    ("{person} won first prize in the competition.", "{person} took first place in the contest."),
    ("The shop on the corner sells fresh bread every morning.",
     "Every morning, fresh bread is sold at the corner shop."),
    ("{person} has worked at the hospital for {years} years.", "{person} has been employed at the hospital for {years} "
                                                                "years."),
    ("Our flight to {city} was cancelled.", "The airline cancelled our flight to {city}."),
    ("The teacher explained the rules again.", "The rules were explained once more by the teacher."),
]

PARAPHRASE_SLOTS = {
    "person": [p.split()[0] for p in PEOPLE] + PEOPLE[:10],
    "thing": ["bicycle", "laptop", "camera", "sofa", "phone", "coat", "printer", "kettle", "lamp", "guitar"],
    "things": ["tomatoes", "concert tickets", "umbrellas", "winter boots", "strawberries", "batteries", "notebooks"],
    "place": ["pharmacy", "post office", "library", "bakery", "train station", "bank", "dentist's office"],
    "city": ["Lisbon", "Chicago", "Osaka", "Cairo", "Dublin", "Toronto", "Vienna", "Lima"],
    "day": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "the end of the month"],
    "time": ["six o'clock", "nine in the evening", "noon", "half past seven", "midnight"],
    "minutes": ["10", "15", "20", "25", "40"], "count": ["12", "30", "50", "8", "200"],
    "years": ["two", "three", "five", "ten"], "age": ["five", "six", "ten", "twelve"],
    "hours": ["two", "three", "four", "six"],
    "language": ["Spanish", "Japanese", "Arabic", "German", "Italian", "Korean"],
    "food": ["peanuts", "shellfish", "strawberries", "eggs", "wheat"],
}


def build_paraphrase(rng: random.Random) -> None:
    train_pairs, dev_pairs = held_out(PARAPHRASE_PAIRS)

    def maker(pairs: list[tuple[str, str]]) -> Callable[[random.Random], dict]:
        def make(r: random.Random) -> dict:
            a, b = r.choice(pairs)
            if r.random() < 0.5:  # both directions: the task is symmetric
                a, b = b, a
            marker = "\x00"
            filled = fill(a + marker + b, r, PARAPHRASE_SLOTS)
            sentence, paraphrase = filled.split(marker)
            return {"sentence": _capitalize(sentence), "paraphrase": _capitalize(paraphrase)}
        return make

    seen: set = set()
    train = fill_unique(maker(train_pairs), 240, rng, "sentence", seen)
    dev = fill_unique(maker(dev_pairs), 40, rng, "sentence", seen)
    write_jsonl("paraphrase.train.jsonl", train)
    write_jsonl("paraphrase.dev.jsonl", dev)


# ---------------------------------------------------------------------------
# Transliteration: Russian Cyrillic -> Latin (the scheme is programs.transliterate.SCHEME)
# ---------------------------------------------------------------------------

RU_WORDS = """
дом кот собака мама папа брат сестра друг подруга школа книга стол стул окно дверь город улица река море лес поле
гора солнце луна звезда небо дождь снег ветер зима весна лето осень утро вечер ночь день неделя месяц год время вода
хлеб молоко сыр масло яблоко груша вишня картошка суп чай кофе сахар соль мясо рыба яйцо машина поезд самолёт автобус
велосипед дорога мост вокзал аэропорт магазин рынок больница аптека библиотека музей театр кино парк сад цветок дерево
трава птица лошадь корова медведь волк лиса заяц мышь рубашка платье шапка куртка ботинки телефон компьютер письмо
газета журнал ручка карандаш тетрадь бумага работа учитель врач студент ребёнок дети семья бабушка дедушка сын дочь муж
жена язык слово вопрос ответ песня музыка игра праздник подарок деньги цена ключ сумка часы чашка тарелка ложка вилка
нож кухня комната квартира крыша стена лампа зеркало кровать одеяло подушка озеро остров берег пляж корабль лодка
погода счастье любовь жизнь мир страна столица история наука шахматы футбол хоккей борщ пельмени щи каша блины икра
матрёшка самовар спутник тайга тундра изба щука ёлка ёж юбка юг север запад восток ягода якорь январь февраль март
апрель май июнь июль август сентябрь октябрь ноябрь декабрь понедельник вторник среда четверг пятница суббота
воскресенье объявление подъезд съезд объём здоровье воробей соловей чайник щётка жёлтый зелёный красный синий белый
чёрный большой маленький новый старый хороший плохой быстрый медленный тёплый холодный горячий вкусный красивый
сильный лёгкий тяжёлый один два три четыре пять шесть семь восемь девять десять сто тысяча спасибо пожалуйста
здравствуйте привет пока да нет хорошо читать писать говорить думать знать любить жить работать играть петь пить
спать гулять бежать прыгать смотреть слушать понимать помнить ждать искать найти купить продать открыть закрыть
начать мечтать учиться вчера сегодня завтра всегда никогда часто здесь там вместе быстро медленно очень тоже уже ещё
счёт щенок шоколад шарф жук жираф цирк царь цапля чудо чемодан хлопок хор художник фонарь фабрика эхо экран этаж юмор
юность ящик ящерица подъём вьюга статья бельё лось рысь тень боль пыль дым мыло мыть быть выход вход выставка чистый
широкий высокий глубокий мягкий жаркий щедрый честный дружба зеркальце свеча огонь печь пирог варенье мёд каштан
орех гриб малина клубника арбуз дыня огурец помидор капуста морковь лук чеснок перец лимон апельсин банан виноград
""".split()

RU_GIVEN_MALE = """
Иван Дмитрий Сергей Алексей Михаил Андрей Николай Павел Владимир Юрий Григорий Фёдор Вячеслав Евгений Богдан Эдуард
Пётр Тимофей Илья Артём Ярослав Лев Кирилл Максим Виктор Захар Роман Вадим Игорь Василий
""".split()
RU_GIVEN_FEMALE = """
Мария Анна Ольга Наталья Елена Татьяна Юлия Екатерина Светлана Людмила Ксения Жанна Зоя Яна Софья Дарья Валерия
Полина Галина
""".split()
RU_SURNAMES = """
Иванов Смирнов Кузнецов Попов Соколов Лебедев Козлов Новиков Морозов Петров Волков Соловьёв Васильев Зайцев Павлов
Семёнов Голубев Виноградов Богданов Воробьёв Фёдоров Михайлов Беляев Тарасов Белов Комаров Орлов Киселёв Макаров
Андреев Ковалёв Ильин Гусев Титов Кузьмин Кудрявцев Баранов Куликов Алексеев Степанов Яковлев Сорокин Сергеев Романов
Захаров Борисов Королёв Герасимов Пономарёв Григорьев Щербаков Чернов Жуков Цветков Юдин
""".split()
RU_NAMES = RU_GIVEN_MALE + RU_GIVEN_FEMALE + RU_SURNAMES

RU_PLACES = """
Москва Санкт-Петербург Новосибирск Екатеринбург Казань Челябинск Самара Омск Ростов-на-Дону Уфа Красноярск Пермь
Воронеж Волгоград Краснодар Саратов Тюмень Тольятти Ижевск Барнаул Ульяновск Иркутск Хабаровск Ярославль Владивосток
Махачкала Томск Оренбург Кемерово Рязань Астрахань Пенза Липецк Тула Киров Чебоксары Калининград Брянск Курск Иваново
Магнитогорск Тверь Ставрополь Белгород Сочи Архангельск Смоленск Мурманск Якутск Сургут Череповец Вологда Орёл Псков
Новгород Суздаль Кострома Петрозаводск Сыктывкар Нальчик Южно-Сахалинск Волга Енисей Байкал Обь Урал Сибирь Камчатка
""".split()

RU_PHRASES = [
    "доброе утро", "добрый вечер", "спокойной ночи", "как дела", "всё хорошо", "до свидания", "с днём рождения",
    "с новым годом", "я тебя люблю", "где вокзал", "сколько стоит", "очень приятно", "большое спасибо", "не за что",
    "извините пожалуйста", "я не понимаю", "говорите медленнее", "Красная площадь", "белые ночи", "русский язык",
    "Чёрное море", "Зимний дворец", "новый год", "старый город", "горячий чай", "холодная вода", "жёлтый цветок",
    "зелёный лес", "Большой театр", "маленький дом", "мой друг", "моя семья", "наша школа", "Летний сад",
    "высокая гора", "быстрая река", "первый снег", "последний поезд", "добро пожаловать", "хорошего дня",
    "приятного аппетита", "всё в порядке", "на улице холодно", "идёт дождь", "мы едем домой", "кошка спит",
    "собака лает", "дети играют", "мама читает книгу", "папа пьёт чай", "я живу в Москве", "он работает врачом",
    "она учится в школе", "где находится музей", "мне нужна помощь", "сегодня тепло", "завтра будет снег",
    "это мой брат", "щи да каша", "ёлка в лесу", "жёлтая подводная лодка", "чай с лимоном", "объявление на стене",
    "подъезд номер пять",
]


def _transliterate(text: str) -> str:
    from programs.transliterate import transliterate  # the scheme lives with the program that is scored on it

    return transliterate(text)


def build_transliterate(rng: random.Random) -> None:
    # Full names agree in gender: Иван Петров, Мария Петрова (every surname here takes -а in the feminine).
    names = [f"{g} {rng.choice(RU_SURNAMES)}" for g in RU_GIVEN_MALE]
    names += [f"{g} {rng.choice(RU_SURNAMES)}а" for g in RU_GIVEN_FEMALE]
    pool = list(dict.fromkeys(RU_WORDS + RU_NAMES + RU_PLACES + RU_PHRASES + names))
    rng.shuffle(pool)
    rows = [{"cyrillic": w, "latin": _transliterate(w)} for w in pool]
    train, dev = held_out(rows, every=5, offset=4)
    write_jsonl("transliterate.train.jsonl", train)
    write_jsonl("transliterate.dev.jsonl", dev)


# ---------------------------------------------------------------------------
# Text to code: a task in English and a function header -> a small Python function, scored by running hidden tests
# ---------------------------------------------------------------------------

XS = [[[1, 5, 8, 12]], [[]], [[-3, 7, 7, 20]], [[10]], [[0, -1, 4, 4, 9]]]
STRS = [["hello world"], [""], ["The quick brown fox"], ["aaa bbb aaa"], ["Level"]]

# tasks (2 phrasings) | function header | solution | parameter sets | test inputs ($name is a parameter)
T2C_FAMILIES: list[tuple[list[str], str, str, list[dict], list[list]]] = [
    (["Return the sum of the numbers in `xs` that are greater than $k.",
      "Add up the numbers in `xs` that are bigger than $k and return the total."],
     "def sum_above(xs: list[int]) -> int", "def sum_above(xs):\n    return sum(x for x in xs if x > $k)",
     [{"k": 0}, {"k": 3}, {"k": 10}, {"k": -2}, {"k": 5}, {"k": 7}], XS),
    (["Return `x` multiplied by $k.", "Multiply the number `x` by $k and return the result."],
     "def scale(x: int) -> int", "def scale(x):\n    return x * $k",
     [{"k": 2}, {"k": 3}, {"k": 5}, {"k": 10}, {"k": -1}, {"k": 7}], [[0], [1], [-4], [13]]),
    (["Return the number of vowels (a, e, i, o, u, in upper or lower case) in the string `s`.",
      "Count how many characters of `s` are vowels (a, e, i, o or u, ignoring case)."],
     "def count_vowels(s: str) -> int", "def count_vowels(s):\n    return sum(1 for c in s.lower() if c in 'aeiou')",
     [{}], STRS + [["AEIOU xyz"]]),
    (["Return True if `n` is divisible by $k, otherwise False.",
      "Check whether the integer `n` is a multiple of $k and return a bool."],
     "def is_multiple(n: int) -> bool", "def is_multiple(n):\n    return n % $k == 0",
     [{"k": 2}, {"k": 3}, {"k": 4}, {"k": 5}, {"k": 7}, {"k": 11}], [[0], [6], [35], [44], [13], [-21]]),
    (["Return a list of the squares of the numbers in `xs`, in the same order.",
      "Square every number in `xs` and return the new list."],
     "def squares(xs: list[int]) -> list[int]", "def squares(xs):\n    return [x * x for x in xs]", [{}], XS),
    (["Return the string `s` reversed.", "Return `s` written backwards."],
     "def reverse_text(s: str) -> str", "def reverse_text(s):\n    return s[::-1]", [{}], STRS),
    (["Return the largest number in `xs`, or $d if `xs` is empty.",
      "Find the maximum of the list `xs`; when the list is empty return $d instead."],
     "def largest(xs: list[int]) -> int | None", "def largest(xs):\n    return max(xs) if xs else $d",
     [{"d": 0}, {"d": -1}, {"d": "None"}], XS),
    (["Return how many times the character '$c' appears in the string `s`.",
      "Count the occurrences of the letter '$c' in `s`."],
     "def count_char(s: str) -> int", "def count_char(s):\n    return s.count('$c')",
     [{"c": "a"}, {"c": "e"}, {"c": "o"}, {"c": "l"}, {"c": "t"}], STRS + [["eel tool total"]]),
    (["Return a new list with every element of `xs` increased by $k.",
      "Add $k to each number in `xs` and return the resulting list."],
     "def shift_all(xs: list[int]) -> list[int]", "def shift_all(xs):\n    return [x + $k for x in xs]",
     [{"k": 1}, {"k": 2}, {"k": 5}, {"k": 10}, {"k": -3}, {"k": 100}], XS),
    (["Return the average of the numbers in `xs`, rounded to $d decimal places; return 0 for an empty list.",
      "Compute the mean of `xs` rounded to $d decimal places, or 0 when `xs` is empty."],
     "def mean(xs: list[int]) -> float", "def mean(xs):\n    return round(sum(xs) / len(xs), $d) if xs else 0",
     [{"d": 1}, {"d": 2}, {"d": 0}], XS + [[[1, 2]]]),
    (["Return the first $k characters of `s` in upper case.",
      "Take the first $k characters of the string `s` and return them upper-cased."],
     "def head_upper(s: str) -> str", "def head_upper(s):\n    return s[:$k].upper()",
     [{"k": 1}, {"k": 2}, {"k": 3}, {"k": 4}, {"k": 5}], STRS),
    (["Return True if the string `s` reads the same forwards and backwards, ignoring case.",
      "Check whether `s` is a palindrome (upper and lower case count as the same letter)."],
     "def is_palindrome(s: str) -> bool", "def is_palindrome(s):\n    t = s.lower()\n    return t == t[::-1]",
     [{}], [["Level"], ["abc"], [""], ["Racecar"], ["ab"], ["noon"]]),
    (["Return the factorial of the non-negative integer `n` (the factorial of 0 is 1).",
      "Compute n! for a whole number `n` >= 0, where 0! = 1."],
     "def factorial(n: int) -> int",
     "def factorial(n):\n    result = 1\n    for i in range(2, n + 1):\n        result *= i\n    return result",
     [{}], [[0], [1], [5], [10]]),
    (["Return the n-th Fibonacci number, where fib(0) is 0 and fib(1) is 1.",
      "Compute the Fibonacci number at position `n` (position 0 is 0, position 1 is 1)."],
     "def fib(n: int) -> int",
     "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a",
     [{}], [[0], [1], [2], [10], [20]]),
    (["Return a list of the words in `s` (split on whitespace) that have more than $k characters, in order.",
      "Split `s` into words and keep only those longer than $k characters; return them as a list."],
     "def long_words(s: str) -> list[str]", "def long_words(s):\n    return [w for w in s.split() if len(w) > $k]",
     [{"k": 3}, {"k": 4}, {"k": 5}, {"k": 2}], STRS + [["a bb ccc dddd eeeee ffffff"]]),
    (["Return how many even numbers are in `xs`.", "Count the even values in the list `xs`."],
     "def count_even(xs: list[int]) -> int", "def count_even(xs):\n    return sum(1 for x in xs if x % 2 == 0)",
     [{}], XS),
    (["Return `s` with every space replaced by '$c'.", "Replace each space character in `s` with '$c'."],
     "def fill_spaces(s: str) -> str", "def fill_spaces(s):\n    return s.replace(' ', '$c')",
     [{"c": "_"}, {"c": "-"}, {"c": "+"}, {"c": "."}], STRS),
    (["Return the sum of the digits of the non-negative integer `n`.",
      "Add up the decimal digits of the whole number `n` >= 0."],
     "def digit_sum(n: int) -> int", "def digit_sum(n):\n    return sum(int(d) for d in str(n))",
     [{}], [[0], [7], [123], [9999], [1005]]),
    (["Return a new list with the duplicates removed from `xs`, keeping the first occurrence of each value in "
      "order.", "Remove repeated values from `xs` while preserving the order in which values first appear."],
     "def dedupe(xs: list[int]) -> list[int]",
     "def dedupe(xs):\n    seen = set()\n    out = []\n    for x in xs:\n        if x not in seen:\n"
     "            seen.add(x)\n            out.append(x)\n    return out", [{}], XS + [[[3, 1, 3, 2, 1]]]),
    (["Return the numbers in `xs` sorted from largest to smallest.", "Sort the list `xs` in descending order."],
     "def sort_desc(xs: list[int]) -> list[int]", "def sort_desc(xs):\n    return sorted(xs, reverse=True)",
     [{}], XS),
    (["Convert the temperature `c` from degrees Celsius to degrees Fahrenheit.",
      "Return the Fahrenheit value of the Celsius temperature `c` (F = C * 9 / 5 + 32)."],
     "def to_fahrenheit(c: float) -> float", "def to_fahrenheit(c):\n    return c * 9 / 5 + 32",
     [{}], [[0], [100], [-40], [37]]),
    (["Return True if every number in `xs` is greater than zero (True for an empty list).",
      "Check that all values in `xs` are positive; an empty list counts as True."],
     "def all_positive(xs: list[int]) -> bool", "def all_positive(xs):\n    return all(x > 0 for x in xs)", [{}],
     XS + [[[3, 4]]]),
    (["Return the product of the numbers in `xs`, or 1 if `xs` is empty.",
      "Multiply all the numbers in `xs` together and return the result (1 for an empty list)."],
     "def product(xs: list[int]) -> int",
     "def product(xs):\n    result = 1\n    for x in xs:\n        result *= x\n    return result", [{}], XS),
    (["Return `s` repeated $k times, separated by '$sep'.",
      "Join $k copies of the string `s` with '$sep' between them."],
     "def repeat(s: str) -> str", "def repeat(s):\n    return '$sep'.join([s] * $k)",
     [{"k": 2, "sep": ","}, {"k": 3, "sep": "-"}, {"k": 4, "sep": "/"}, {"k": 3, "sep": ","},
      {"k": 2, "sep": "-"}], [["ab"], [""], ["x y"]]),
    (["Return the index of the first number in `xs` that is greater than $k, or -1 if there is none.",
      "Find the position of the first value in `xs` bigger than $k; return -1 when no value is."],
     "def first_above(xs: list[int]) -> int",
     "def first_above(xs):\n    for i, x in enumerate(xs):\n        if x > $k:\n            return i\n    return -1",
     [{"k": 0}, {"k": 5}, {"k": 10}, {"k": 50}], XS),
    (["Return a dictionary that maps each word in `s` (split on whitespace) to how many times it occurs.",
      "Count the words of `s`: return a dict from each whitespace-separated word to its number of occurrences."],
     "def word_counts(s: str) -> dict[str, int]",
     "def word_counts(s):\n    counts = {}\n    for w in s.split():\n        counts[w] = counts.get(w, 0) + 1\n"
     "    return counts", [{}], STRS),
    (["Return the number of words in the string `s`, where words are separated by whitespace.",
      "Count the whitespace-separated words in `s`."],
     "def count_words(s: str) -> int", "def count_words(s):\n    return len(s.split())", [{}],
     STRS + [["  spaced   out  "]]),
    (["Return the difference between the largest and the smallest number in `xs`; `xs` is never empty.",
      "Return max(xs) minus min(xs) for the non-empty list `xs`."],
     "def spread(xs: list[int]) -> int", "def spread(xs):\n    return max(xs) - min(xs)",
     [{}], [[[1, 5, 8, 12]], [[-3, 7, 7, 20]], [[10]], [[0, -1, 4, 4, 9]]]),
    (["Return a list of the numbers in `xs` that are not divisible by $k, in order.",
      "Drop every multiple of $k from `xs` and return what is left."],
     "def drop_multiples(xs: list[int]) -> list[int]", "def drop_multiples(xs):\n    return [x for x in xs if x % $k]",
     [{"k": 2}, {"k": 3}, {"k": 5}, {"k": 10}], XS),
    (["Return True if `year` is a leap year in the Gregorian calendar.",
      "Decide whether `year` is a leap year: divisible by 4, except centuries that are not divisible by 400."],
     "def is_leap(year: int) -> bool",
     "def is_leap(year):\n    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)",
     [{}], [[2024], [1900], [2000], [2023], [1996]]),
    (["Return a list of the numbers from 1 to `n` (inclusive) that are multiples of $k.",
      "List, in increasing order, every multiple of $k between 1 and `n` inclusive."],
     "def multiples(n: int) -> list[int]", "def multiples(n):\n    return [i for i in range(1, n + 1) if i % $k == 0]",
     [{"k": 2}, {"k": 3}, {"k": 5}, {"k": 7}], [[0], [10], [21], [6]]),
    (["Return the second largest distinct value in `xs`, or None if there are fewer than two distinct values.",
      "Find the runner-up value of `xs` (ignoring repeats); return None when it does not exist."],
     "def second_largest(xs: list[int]) -> int | None",
     "def second_largest(xs):\n    values = sorted(set(xs), reverse=True)\n"
     "    return values[1] if len(values) > 1 else None",
     [{}], XS + [[[5, 5, 5]]]),
    (["Return `s` with the first letter of every word in upper case; words are separated by single spaces.",
      "Capitalize the first character of each space-separated word in `s` and leave the rest unchanged."],
     "def capitalize_words(s: str) -> str",
     "def capitalize_words(s):\n    return ' '.join(w[:1].upper() + w[1:] for w in s.split(' '))",
     [{}], [["hello world"], [""], ["the quick brown fox"], ["a"], ["mcDonald farm"]]),
    (["Return `n` limited to the range from $lo to $hi: values below $lo become $lo and values above $hi become $hi.",
      "Clamp the number `n` so that it is at least $lo and at most $hi."],
     "def clamp(n: int) -> int", "def clamp(n):\n    return max($lo, min($hi, n))",
     [{"lo": 0, "hi": 10}, {"lo": 1, "hi": 100}, {"lo": -5, "hi": 5}, {"lo": 18, "hi": 65}],
     [[-10], [0], [7], [50], [1000]]),
    (["Return the sum of all whole numbers from 1 to `n` inclusive (0 when `n` is less than 1).",
      "Add up 1 + 2 + ... + n and return the total; return 0 if `n` < 1."],
     "def sum_to(n: int) -> int", "def sum_to(n):\n    return sum(range(1, n + 1))", [{}],
     [[0], [1], [10], [100], [-3]]),
    (["Return the number of upper-case letters in `s`.", "Count how many characters of `s` are capital letters."],
     "def count_upper(s: str) -> int", "def count_upper(s):\n    return sum(1 for c in s if c.isupper())",
     [{}], STRS + [["ABC def GhI"]]),
    (["Return True if the string `s` starts with '$prefix'.", "Check whether `s` begins with the text '$prefix'."],
     "def has_prefix(s: str) -> bool", "def has_prefix(s):\n    return s.startswith('$prefix')",
     [{"prefix": "re"}, {"prefix": "un"}, {"prefix": "pre"}, {"prefix": "http"}],
     [["redo"], ["undo"], ["preview"], ["https://x"], [""], ["pr"]]),
    (["Return a list with the length of each word in `s` (words are separated by whitespace).",
      "Split `s` on whitespace and return the lengths of the words, in order."],
     "def word_lengths(s: str) -> list[int]", "def word_lengths(s):\n    return [len(w) for w in s.split()]",
     [{}], STRS),
    (["Return `xs` rotated to the left by $k positions (the first $k elements move to the end, wrapping around); "
      "return an empty list when `xs` is empty.",
      "Rotate the list `xs` left by $k places, wrapping around, and return the result ([] for an empty list)."],
     "def rotate_left(xs: list[int]) -> list[int]",
     "def rotate_left(xs):\n    if not xs:\n        return []\n    k = $k % len(xs)\n    return xs[k:] + xs[:k]",
     [{"k": 1}, {"k": 2}, {"k": 3}], XS),
    (["Return the greatest common divisor of the positive integers `a` and `b`.",
      "Compute the largest integer that divides both `a` and `b` (both are positive)."],
     "def gcd(a: int, b: int) -> int", "def gcd(a, b):\n    while b:\n        a, b = b, a % b\n    return a",
     [{}], [[12, 18], [7, 5], [100, 75], [9, 9]]),
    (["Return how many numbers in `xs` are between $lo and $hi, inclusive.",
      "Count the values of `xs` that are at least $lo and at most $hi."],
     "def count_between(xs: list[int]) -> int",
     "def count_between(xs):\n    return sum(1 for x in xs if $lo <= x <= $hi)",
     [{"lo": 1, "hi": 10}, {"lo": 0, "hi": 100}, {"lo": -5, "hi": 5}, {"lo": 7, "hi": 12}], XS),
    (["Return `s` with all digit characters removed.", "Delete every digit (0-9) from the string `s`."],
     "def strip_digits(s: str) -> str", "def strip_digits(s):\n    return ''.join(c for c in s if not c.isdigit())",
     [{}], [["a1b2c3"], [""], ["2024 was a year"], ["no digits"]]),
    (["Return the sum of the squares of the odd numbers in `xs`.",
      "Square each odd number in `xs` and add the squares together."],
     "def odd_square_sum(xs: list[int]) -> int", "def odd_square_sum(xs):\n    return sum(x * x for x in xs if x % 2)",
     [{}], XS),
    (["Return True if the strings `a` and `b` contain exactly the same characters in any order, ignoring case.",
      "Check whether `a` and `b` are anagrams of each other (case does not matter)."],
     "def are_anagrams(a: str, b: str) -> bool",
     "def are_anagrams(a, b):\n    return sorted(a.lower()) == sorted(b.lower())",
     [{}], [["Listen", "Silent"], ["abc", "abd"], ["", ""], ["aab", "abb"], ["Dusty", "study"]]),
    (["Return the last $k elements of `xs` in reverse order (all of them, reversed, if `xs` is shorter).",
      "Take up to $k elements from the end of `xs` and return them last-first."],
     "def tail_reversed(xs: list[int]) -> list[int]", "def tail_reversed(xs):\n    return xs[::-1][:$k]",
     [{"k": 1}, {"k": 2}, {"k": 3}], XS),
    (["Return the smallest number in `xs` multiplied by $k; `xs` is never empty.",
      "Multiply the minimum of the non-empty list `xs` by $k."],
     "def min_times(xs: list[int]) -> int", "def min_times(xs):\n    return min(xs) * $k",
     [{"k": 2}, {"k": 3}, {"k": -1}, {"k": 10}], [[[1, 5, 8, 12]], [[-3, 7, 7, 20]], [[10]], [[0, -1, 4, 4, 9]]]),
    (["Return `s` with all vowels (a, e, i, o, u, in either case) removed.",
      "Delete every vowel, upper or lower case, from the string `s`."],
     "def remove_vowels(s: str) -> str",
     "def remove_vowels(s):\n    return ''.join(c for c in s if c.lower() not in 'aeiou')",
     [{}], STRS),
    (["Return the number of different characters in `s`.", "Count how many distinct characters the string `s` has."],
     "def distinct_chars(s: str) -> int", "def distinct_chars(s):\n    return len(set(s))", [{}], STRS),
    (["Return the running totals of `xs`: element i of the result is the sum of xs[0] through xs[i].",
      "Return the cumulative sums of the list `xs`."],
     "def running_total(xs: list[int]) -> list[int]",
     "def running_total(xs):\n    out = []\n    total = 0\n    for x in xs:\n        total += x\n"
     "        out.append(total)\n    return out", [{}], XS),
    (["Return `s` padded on the left with '$c' until it is $k characters long (unchanged if it is already at least "
      "that long).", "Left-pad the string `s` with the character '$c' to a length of $k."],
     "def pad_left(s: str) -> str", "def pad_left(s):\n    return s.rjust($k, '$c')",
     [{"c": "0", "k": 5}, {"c": "*", "k": 8}, {"c": "-", "k": 6}, {"c": "0", "k": 3}], [["42"], [""], ["abcdefghij"]]),
    (["Return the elements of `xs` at even positions (index 0, 2, 4, ...).",
      "Return every other element of `xs`, starting with the first."],
     "def even_positions(xs: list[int]) -> list[int]", "def even_positions(xs):\n    return xs[::2]", [{}], XS),
    (["Return how many numbers in `xs` are negative.", "Count the values below zero in `xs`."],
     "def count_negative(xs: list[int]) -> int", "def count_negative(xs):\n    return sum(1 for x in xs if x < 0)",
     [{}], XS + [[[-1, -2, -3]]]),
    (["Return the acronym of `s`: the first letter of each whitespace-separated word, in upper case.",
      "Build an upper-case acronym from the first letters of the words in `s`."],
     "def acronym(s: str) -> str", "def acronym(s):\n    return ''.join(w[0].upper() for w in s.split())",
     [{}], STRS + [["portable network graphics"]]),
    (["Return `x` raised to the power $k.", "Compute `x` to the $k-th power."],
     "def power(x: int) -> int", "def power(x):\n    return x ** $k", [{"k": 2}, {"k": 3}, {"k": 4}, {"k": 5}],
     [[0], [2], [-3], [10]]),
    (["Return the longest word in `s` (split on whitespace); if several are equally long, return the first one.",
      "Find the first of the longest whitespace-separated words in the non-empty string `s`."],
     "def longest_word(s: str) -> str", "def longest_word(s):\n    return max(s.split(), key=len)",
     [{}], [["hello world"], ["The quick brown fox"], ["a bb cc"], ["single"]]),
    (["Convert a number of `minutes` into a string 'H:MM' (hours, a colon, then minutes as two digits).",
      "Format `minutes` as hours and minutes like '2:05' for 125."],
     "def format_minutes(minutes: int) -> str",
     "def format_minutes(minutes):\n    return f'{minutes // 60}:{minutes % 60:02d}'", [{}],
     [[0], [59], [60], [125], [601]]),
    (["Return True if `xs` is sorted in non-decreasing order.",
      "Check whether each element of `xs` is less than or equal to the next one."],
     "def is_sorted(xs: list[int]) -> bool",
     "def is_sorted(xs):\n    return all(a <= b for a, b in zip(xs, xs[1:]))", [{}], XS + [[[1, 2, 2, 3]]]),
    (["Return the words of `s` that start with a vowel (a, e, i, o, u, either case), in order.",
      "Keep only the whitespace-separated words of `s` whose first letter is a vowel."],
     "def vowel_words(s: str) -> list[str]",
     "def vowel_words(s):\n    return [w for w in s.split() if w[0].lower() in 'aeiou']",
     [{}], STRS + [["An apple is on every table"]]),
    (["Convert `km` kilometers to miles (1 km = 0.621371 miles), rounded to 2 decimal places.",
      "Return the distance `km` expressed in miles, using 0.621371 miles per kilometer and rounding to 2 decimals."],
     "def km_to_miles(km: float) -> float", "def km_to_miles(km):\n    return round(km * 0.621371, 2)",
     [{}], [[0], [1], [42.195], [100]]),
]


def _t2c_items(family: tuple, phrasing_rng: random.Random) -> list[dict]:
    tasks, header, solution, params, inputs = family
    entry_point = header.split("(")[0].removeprefix("def ")
    items = []
    for i, p in enumerate(params):
        code = string.Template(solution).substitute(p)
        namespace: dict = {}
        exec(code, namespace)  # noqa: S102 - our own reference solutions, to compute the expected outputs
        tests = [{"args": args, "expected": namespace[entry_point](*args)} for args in inputs]
        # Unparameterized families get both phrasings; parameterized ones alternate them.
        chosen = tasks if len(params) == 1 else [tasks[i % 2]]
        for task in chosen:
            items.append({"task": string.Template(task).substitute(p), "header": header,
                          "entry_point": entry_point, "code": code, "tests": tests})
    phrasing_rng.shuffle(items)
    return items


def build_text2code(rng: random.Random) -> None:
    train_families, dev_families = held_out(T2C_FAMILIES)
    train: list[dict] = []
    dev: list[dict] = []
    for family in train_families:
        items = _t2c_items(family, rng)
        if len(family[3]) > 1:  # one parameter setting of each seen family is kept for dev
            dev.append(items.pop())
        train += items
    for family in dev_families:
        dev += _t2c_items(family, rng)
    rng.shuffle(train)
    rng.shuffle(dev)
    write_jsonl("text2code.train.jsonl", train)
    write_jsonl("text2code.dev.jsonl", dev)


def main() -> None:
    builders = [build_classify, build_ner, build_qa, build_translate, build_summarize, build_paraphrase,
                build_transliterate, build_text2code]
    for i, builder in enumerate(builders):
        builder(random.Random(1000 + i))


if __name__ == "__main__":
    main()
